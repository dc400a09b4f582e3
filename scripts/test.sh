#!/usr/bin/env bash
# Run the whole test suite (the fast tier and the `slow` end-to-end tier) in .venv, bootstrapping it
# if needed. pyproject's addopts deselect `slow` for a plain `pytest`; `-m ""` selects everything again.
# Extra arguments go to pytest after it, e.g. `bash scripts/test.sh -m "not slow"` for the fast tier.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh" || exit 1
cd "$ROOT" || exit 1
.venv/bin/python -m pytest -m "" --durations=30 "$@"
status=$?
if [[ $status -eq 5 ]]; then
  echo "pytest collected no tests: treated as a failure" >&2
  exit 1
fi
exit $status
