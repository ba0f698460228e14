"""`python -m webapp`: serve the app with waitress (a production WSGI server, never Flask's
debug server) and print its address once it listens."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from waitress.server import create_server

from summarizer.errors import UserError
from webapp.app import create_app
from webapp.settings import ENV_NAMES

# waitress's defaults (100 connections, idle ones closed after 120 s, checked every 30 s) let
# 100 clients that open a connection and send nothing lock everyone else out for two minutes.
# Connections cost little (a socket and a few KB; the threads serve only complete requests), so
# allow many, and close the idle or half-sent ones soon: a client that sends nothing for 15 s is
# gone or hostile, browsers reopen a keep-alive connection the server closed, and a request being
# answered is never cut (waitress times out only connections without one). Poll, not select():
# select() cannot watch file descriptors above 1024. Below a common 1024 open-files limit too.
CONNECTION_LIMIT = 500
CHANNEL_TIMEOUT = 15  # seconds a connection may stay silent
CLEANUP_INTERVAL = 5  # seconds between checks, so an idle connection lasts 20 s at most


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be above 0")
    return value


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)  # a stopped container ends like Ctrl-C: the server closes its sockets


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m webapp",
        description="Serve the issue-summarizer web app. Settings come from the environment: "
                    + ", ".join(ENV_NAMES.values()) + " (see webapp/README.md).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: a free one)")
    parser.add_argument("--threads", type=_positive, default=4, help="requests served at once")
    parser.add_argument("--connection-limit", type=_positive, default=CONNECTION_LIMIT,
                        help="open connections at most; more wait to be accepted (default %(default)s)")
    parser.add_argument("--channel-timeout", type=_positive, default=CHANNEL_TIMEOUT,
                        help="seconds a connection may send nothing before it is closed "
                             "(one waiting for its answer is kept; default %(default)s)")
    parser.add_argument("--cleanup-interval", type=_positive, default=CLEANUP_INTERVAL,
                        help="seconds between the checks for silent connections (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app()
    except UserError as error:
        print(f"issue-summarizer web app: error: {error}", file=sys.stderr)
        return 1
    try:
        server = create_server(app, host=args.host, port=args.port, threads=args.threads,
                               connection_limit=args.connection_limit, channel_timeout=args.channel_timeout,
                               cleanup_interval=args.cleanup_interval, asyncore_use_poll=True)
    except OSError as error:
        print(f"issue-summarizer web app: error: cannot listen on {args.host}:{args.port} ({error.strerror})",
              file=sys.stderr)
        return 1
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"issue-summarizer web app: http://{host}:{server.effective_port}/", flush=True)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
