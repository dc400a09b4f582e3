# shellcheck shell=bash
# Shared body of run_rejection_sampling_t2i.sh / _t2v.sh (sourced, not run): validate the env-var
# knobs, run rejection sampling, then convert the kept samples to GRM SFT data.
# The wrapper sets MEDIA (image | video) and its defaults before sourcing this file.

PROG="$(basename "$0")"
die() {
    echo "$PROG: error: $*" >&2
    exit 2
}

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO_DIR/.venv/bin/python" ]]; then PYTHON="$REPO_DIR/.venv/bin/python"; else PYTHON=python3; fi
fi

[[ -n "${MODEL_PATH:-}" ]] || die "set MODEL_PATH to the GRM checkpoint"
[[ -n "${DATA_PATH:-}" ]] || die "set DATA_PATH to source:path[,source:path] (e.g. $EXAMPLE_DATA_PATH)"
OUTPUT_DIR="${OUTPUT_DIR:-outputs/rejection_sampling_$TASK}"
INFERENCE_BATCH_SIZE="${INFERENCE_BATCH_SIZE:-8}"
MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-2048}"
TASK_INSTRUCTION="${TASK_INSTRUCTION:-}"      # text with {prompt}, or @FILE; empty: built-in default
USE_COT="${USE_COT:-1}"
ENGINE="${ENGINE:-hf}"                          # hf | vllm
GPUS_PER_NODE="${GPUS_PER_NODE:-2}"             # vllm: tensor-parallel size
GPU_MEMORY_UTILIZATION="${GPU_MEMORY_UTILIZATION:-0.9}"
TEMPERATURE="${TEMPERATURE:-0}"                 # 0: greedy
SEED="${SEED:-0}"

# DATA_ROOT: relative dataset files in DATA_PATH are looked up under it (media paths inside a
# dataset file resolve against that file's folder).
data_path=""
IFS=',' read -ra entries <<< "$DATA_PATH"
for entry in "${entries[@]}"; do
    [[ "$entry" == *:* ]] || die "DATA_PATH entry '$entry' is not source:path"
    source_name="${entry%%:*}"
    file="${entry#*:}"
    if [[ -n "${DATA_ROOT:-}" && "$file" != /* ]]; then file="$DATA_ROOT/$file"; fi
    data_path="${data_path:+$data_path,}$source_name:$file"
done

filtered="$OUTPUT_DIR/filtered_samples.jsonl"
cmd=("$PYTHON" -m vlmrm.grm.rejection_sampling
    --model_path "$MODEL_PATH"
    --data_path "$data_path"
    --output_path "$filtered"
    --batch_size "$INFERENCE_BATCH_SIZE"
    --max_new_tokens "$MAX_NEW_TOKENS"
    --engine "$ENGINE"
    --temperature "$TEMPERATURE"
    --seed "$SEED")
if [[ "$USE_COT" == 1 ]]; then cmd+=(--use_cot); fi
if [[ -n "$TASK_INSTRUCTION" ]]; then cmd+=(--task_instruction "$TASK_INSTRUCTION"); fi
if [[ "$MEDIA" == video ]]; then cmd+=(--video_fps "$VIDEO_FPS"); fi
if [[ "$ENGINE" == vllm ]]; then
    cmd+=(--tensor_parallel_size "$GPUS_PER_NODE" --gpu_memory_utilization "$GPU_MEMORY_UTILIZATION")
fi

convert=("$PYTHON" -m vlmrm.grm.convert
    --input "$filtered"
    --output "$OUTPUT_DIR/rejection_sampling_train.json")
if [[ "$MEDIA" == video ]]; then convert+=(--video_fps "$VIDEO_FPS"); fi

echo "+ $(printf '%q ' "${cmd[@]}")"
echo "+ $(printf '%q ' "${convert[@]}")"
if [[ "${DRY_RUN:-0}" == 1 ]]; then exit 0; fi
export PYTHONPATH="$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"  # vlmrm importable from any directory
mkdir -p "$OUTPUT_DIR"
"${cmd[@]}"
"${convert[@]}"
echo "training data: $OUTPUT_DIR/rejection_sampling_train.json"
