#!/usr/bin/env bash
# Makes Debian's Chromium (/usr/bin/chromium) available for the browser tests: Playwright
# drives it through executable_path, since `playwright install` needs a download site that
# is often out of reach. Installs it with apt-get when it is missing and this user may (root,
# or sudo without a password). Otherwise it says why and exits 0, so the rest of the suite
# still runs; tests/test_browser.py then fails with a message saying how to install it.
set -euo pipefail
browser=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$browser" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-browser: $browser is missing and there is no apt-get here; install Chromium and set CHROMIUM=/path/to/chromium for the browser tests" >&2
  exit 0
fi
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -qq)
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
    echo "setup-browser: $browser is missing and installing it needs root; run: sudo apt-get install chromium" >&2
    exit 0
  fi
  apt=(sudo -n "${apt[@]}")
fi
echo "setup-browser: installing Chromium for the browser tests (apt-get install chromium)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends chromium; } >"$log" 2>&1; then
  echo "setup-browser: apt-get could not install chromium; the browser tests will fail. Its output ends:" >&2
  tail -n 20 "$log" >&2
fi
