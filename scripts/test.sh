#!/usr/bin/env bash
# Run the whole test suite (slow end-to-end tests included) in .venv, bootstrapping it if needed.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh" || exit 1
cd "$ROOT" || exit 1
.venv/bin/python -m pytest "$@"
status=$?
if [[ $status -eq 5 ]]; then
  echo "pytest collected no tests: treated as a failure" >&2
  exit 1
fi
exit $status
