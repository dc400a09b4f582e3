#!/usr/bin/env bash
# The main job on the embedded defaults: tiny Qwen-VL checkpoint + synthetic video pairs, on CPU.
# Bootstraps .venv on first use; extra arguments go to `python -m vlmrm.quickstart`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
.venv/bin/python -m vlmrm.quickstart "$@"
