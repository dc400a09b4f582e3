#!/usr/bin/env bash
# The main job on the embedded defaults, on CPU: build a tiny Qwen-VL checkpoint and synthetic video
# pairs (once), train a reward model on 2 processes (torchrun, gloo), print held-out accuracy.
# Bootstraps .venv on first use. Extra arguments go to train_rm.py (e.g. --num_train_epochs 2).
set -euo pipefail
STARTED="$(date +%s)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
CONFIG=training_configs/quickstart_cpu.yaml
.venv/bin/python -m vlmrm.reward.quickstart prepare
./run_distributed.sh --gpus 2 --config "$CONFIG" -- "$@"
.venv/bin/python -m vlmrm.reward.quickstart report outputs/quickstart --started "$STARTED"
