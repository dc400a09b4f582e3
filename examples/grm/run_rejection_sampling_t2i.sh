#!/usr/bin/env bash
# T2I rejection sampling data preparation: GRM verdicts on image pairs -> keep the correct ones ->
# GRM SFT data in $OUTPUT_DIR/rejection_sampling_train.json.
#
#   MODEL_PATH=ckpt DATA_PATH="hpdv3:train.json" DATA_ROOT=/data/hpdv3 \
#       bash examples/grm/run_rejection_sampling_t2i.sh
#
# Knobs (environment): MODEL_PATH, DATA_PATH ("source:path[,source:path]"), DATA_ROOT (folder
# relative DATA_PATH files are under), OUTPUT_DIR, INFERENCE_BATCH_SIZE (8), MAX_NEW_TOKENS (2048),
# TASK_INSTRUCTION (text with {prompt} or @FILE; default: the built-in T2I one), USE_COT (1),
# ENGINE (hf | vllm), GPUS_PER_NODE (2, vLLM tensor parallel), GPU_MEMORY_UTILIZATION (0.9),
# TEMPERATURE (0 = greedy), SEED (0), PYTHON, DRY_RUN=1 (print the commands only).
set -euo pipefail
# shellcheck disable=SC2034  # read by rejection_sampling_common.sh
MEDIA=image
TASK=t2i
EXAMPLE_DATA_PATH="hpdv3:path/to/dataset.json"
source "$(dirname "${BASH_SOURCE[0]}")/rejection_sampling_common.sh"
