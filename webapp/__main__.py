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


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)  # a stopped container ends like Ctrl-C: the server closes its sockets


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m webapp",
        description="Serve the issue-summarizer web app. Settings come from the environment: "
                    + ", ".join(ENV_NAMES.values()) + " (see webapp/README.md).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: a free one)")
    parser.add_argument("--threads", type=int, default=4, help="requests served at once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app()
    except UserError as error:
        print(f"issue-summarizer web app: error: {error}", file=sys.stderr)
        return 1
    try:
        server = create_server(app, host=args.host, port=args.port, threads=args.threads)
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
