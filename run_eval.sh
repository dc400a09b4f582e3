#!/usr/bin/env bash
# Evaluate checkpoints (reward models; VTG with task: vtg): ./run_eval.sh [CONFIG] [GPU]
#   CONFIG  evaluation YAML (default: training_configs/eval_config_example.yaml)
#   GPU     device index to use (sets CUDA_VISIBLE_DEVICES); without a visible GPU it runs on CPU.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIG="${1:-$SCRIPT_DIR/training_configs/eval_config_example.yaml}"
if [[ "${CONFIG}" == "-h" || "${CONFIG}" == "--help" ]]; then
    sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
if [[ ! -f "$CONFIG" ]]; then
    echo "run_eval.sh: config not found: $CONFIG" >&2
    exit 2
fi
if [[ $# -ge 2 ]]; then
    if ! [[ "$2" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
        echo "run_eval.sh: GPU must be a device index like 0 (or 0,1), got '$2'" >&2
        exit 2
    fi
    export CUDA_VISIBLE_DEVICES="$2"
fi
if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ -x "$SCRIPT_DIR/.venv/bin/python" ]]; then
    PY="$SCRIPT_DIR/.venv/bin/python"
else
    PY=python3
fi
shift $(( $# > 0 ? 1 : 0 ))
shift $(( $# > 0 ? 1 : 0 ))
exec "$PY" "$SCRIPT_DIR/eval_rm.py" "$CONFIG" "$@"
