#!/usr/bin/env bash
# Run the whole test suite (the fast tier and the `slow` end-to-end tier) in .venv, bootstrapping it
# if needed. pyproject's addopts deselect `slow` for a plain `pytest`; `-m ""` selects everything again.
# Extra arguments go to pytest after it, e.g. `bash scripts/test.sh -m "not slow"` for the fast tier.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh" || exit 1
# tests/reward/test_report.py renders report.html in headless Chromium (Debian/Ubuntu package
# `chromium`); installed here when missing and apt-get runs as root. Under CI=true that test fails
# instead of skipping when no Chromium can be found.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get) for the report rendering test" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || echo "could not install chromium: the report rendering test skips (fails under CI)" >&2
  else
    echo "no chromium and no root apt-get: the report rendering test skips (fails under CI)" >&2
  fi
fi
cd "$ROOT" || exit 1
.venv/bin/python -m pytest -m "" --durations=30 "$@"
status=$?
if [[ $status -eq 5 ]]; then
  echo "pytest collected no tests: treated as a failure" >&2
  exit 1
fi
exit $status
