#!/usr/bin/env bash
# T2V rejection sampling data preparation: GRM verdicts on video pairs -> keep the correct ones ->
# GRM SFT data in $OUTPUT_DIR/rejection_sampling_train.json (with video_fps).
#
#   MODEL_PATH=ckpt DATA_PATH="rapidata-t2v:a.parquet,rapidata-t2v:b.parquet" VIDEO_FPS=2.0 \
#       bash examples/grm/run_rejection_sampling_t2v.sh
#
# Knobs (environment): those of run_rejection_sampling_t2i.sh (TASK_INSTRUCTION defaults to the
# built-in T2V one) plus VIDEO_FPS (2.0: frames sampled per second; use the same value in training).
set -euo pipefail
# shellcheck disable=SC2034  # read by rejection_sampling_common.sh
MEDIA=video
TASK=t2v
EXAMPLE_DATA_PATH="rapidata-t2v:path/to/dataset.parquet"
VIDEO_FPS="${VIDEO_FPS:-2.0}"
source "$(dirname "${BASH_SOURCE[0]}")/rejection_sampling_common.sh"
