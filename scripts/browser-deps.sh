#!/usr/bin/env bash
# Browser tests drive Debian's Chromium; install it when missing and we are allowed to.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian chromium for the browser tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "could not install chromium: browser tests will be skipped with a reason" >&2
else
  echo "no /usr/bin/chromium and no root apt-get: browser tests will be skipped with a reason" >&2
fi
exit 0
