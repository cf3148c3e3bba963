#!/usr/bin/env bash
# Debian packages the server and its tests use, installed when missing and we may:
# bubblewrap (the sandbox of shell steps) and chromium (the browser tests).
set -u
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
[ -x /usr/bin/chromium ] || [ "${1:-}" = "--no-browser" ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "could not install ${missing[*]}: see docs/security.md (sandbox) and docs/testing.md" >&2
else
  echo "missing ${missing[*]} and no root apt-get: steps run unsandboxed (every page says so)" \
    "and browser tests are skipped with a reason" >&2
fi
exit 0
