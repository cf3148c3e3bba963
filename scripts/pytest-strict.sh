#!/usr/bin/env bash
# Run pytest; exit code 5 ("no tests collected") is a failure, never a silent pass.
set -u
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q -rs "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
