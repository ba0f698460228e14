#!/usr/bin/env bash
# Installs the system programs some tests drive, from Debian's packages, when they are missing and
# this user may (root, or sudo without a password):
# - chromium: the browser tests (Playwright drives /usr/bin/chromium through executable_path,
#   since `playwright install` needs a download site that is often out of reach);
# - strace: tests/test_no_telemetry.py watches the product's processes for outbound connections.
# Otherwise it says why and exits 0, so the rest of the suite still runs; those tests then fail
# with a message saying how to install what they need.
set -euo pipefail
browser=${CHROMIUM:-/usr/bin/chromium}
missing=()
[ -x "$browser" ] || missing+=(chromium)
command -v strace >/dev/null 2>&1 || missing+=(strace)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: ${missing[*]} missing and there is no apt-get here; install them (for Chromium elsewhere, set CHROMIUM=/path/to/chromium)" >&2
  exit 0
fi
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -qq)
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
    echo "setup-system: ${missing[*]} missing and installing needs root; run: sudo apt-get install ${missing[*]}" >&2
    exit 0
  fi
  apt=(sudo -n "${apt[@]}")
fi
echo "setup-system: installing ${missing[*]} for the tests (apt-get install ${missing[*]})"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  echo "setup-system: apt-get could not install ${missing[*]}; the tests that need them will fail. Its output ends:" >&2
  tail -n 20 "$log" >&2
fi
