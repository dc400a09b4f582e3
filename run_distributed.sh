#!/usr/bin/env bash
# Launch train_rm.py on N processes per node with torchrun (default) or the DeepSpeed launcher.
# Everything is validated before anything is launched; the exact command is printed, then exec'd.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TRAIN_SCRIPT="$SCRIPT_DIR/train_rm.py"
PROG="$(basename "$0")"

usage() {
    cat <<EOF
Usage: $PROG --config FILE [options] [-- TRAIN_RM_ARGS...]

Run train_rm.py FILE on N processes per node. Relative paths are resolved from the current directory.

Options:
  --config FILE          training config (YAML/JSON) passed to train_rm.py (required)
  --gpus N               processes (GPUs) per node (default: \$GPUS_PER_NODE or 8)
  --port P               master port (default: \$MASTER_PORT or 29500)
  --nnodes N             number of nodes (default: \$NNODES or 1)
  --node_rank R          rank of this node, 0..nnodes-1 (default: \$NODE_RANK or 0)
  --master_addr A        address of node 0 (default: \$MASTER_ADDR or 127.0.0.1)
  --launcher L           torchrun | deepspeed (default: torchrun)
  --cpu                  run N CPU processes (gloo) even on a machine with GPUs, also when torch
                         cannot use them (without it, that case stops with an explanation)
  -h, --help             show this help
  --                     everything after it goes to train_rm.py verbatim,
                         e.g. -- --learning_rate 5e-6 --num_train_epochs 5

The Python interpreter is \$PYTHON, else <repo>/.venv/bin/python, else python3.
Without visible GPUs, N CPU processes run with the gloo backend ('--use_cpu true --ddp_backend gloo'
is passed before your extra arguments, which can override it); torchrun only.
ZeRO is chosen in the config ('deepspeed: ds_config/zero2.json'), and works under either launcher.
With --launcher deepspeed and --nnodes > 1, run the script on every node; DeepSpeed then needs a
hostfile listing all nodes (its default is /job/hostfile).
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 2
}

die_usage() {
    echo "$PROG: error: $*" >&2
    usage >&2
    exit 2
}

need_value() {  # need_value OPTION REMAINING_ARG_COUNT
    [[ "$2" -ge 2 ]] || die_usage "$1 needs a value"
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

gpus="${GPUS_PER_NODE:-8}"
port="${MASTER_PORT:-29500}"
nnodes="${NNODES:-1}"
node_rank="${NODE_RANK:-0}"
master_addr="${MASTER_ADDR:-127.0.0.1}"
launcher="torchrun"
config=""
force_cpu=0
extra_args=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --gpus) need_value "$1" $#; gpus="$2"; shift 2 ;;
        --gpus=*) gpus="${1#*=}"; shift ;;
        --port) need_value "$1" $#; port="$2"; shift 2 ;;
        --port=*) port="${1#*=}"; shift ;;
        --config) need_value "$1" $#; config="$2"; shift 2 ;;
        --config=*) config="${1#*=}"; shift ;;
        --nnodes) need_value "$1" $#; nnodes="$2"; shift 2 ;;
        --nnodes=*) nnodes="${1#*=}"; shift ;;
        --node_rank) need_value "$1" $#; node_rank="$2"; shift 2 ;;
        --node_rank=*) node_rank="${1#*=}"; shift ;;
        --master_addr) need_value "$1" $#; master_addr="$2"; shift 2 ;;
        --master_addr=*) master_addr="${1#*=}"; shift ;;
        --launcher) need_value "$1" $#; launcher="$2"; shift 2 ;;
        --launcher=*) launcher="${1#*=}"; shift ;;
        --cpu) force_cpu=1; shift ;;
        --) shift; extra_args=("$@"); break ;;
        *) die_usage "unknown option '$1' (arguments for train_rm.py go after '--')" ;;
    esac
done

# ---- validate everything before launching ----
[[ -n "$config" ]] || die_usage "--config is required"
[[ -f "$config" ]] || die "config file not found: $config (cwd: $PWD)"
[[ -f "$TRAIN_SCRIPT" ]] || die "training script not found: $TRAIN_SCRIPT"
{ is_uint "$gpus" && ((10#$gpus > 0)); } || die "--gpus must be a positive integer, got '$gpus'"
{ is_uint "$nnodes" && ((10#$nnodes > 0)); } || die "--nnodes must be a positive integer, got '$nnodes'"
is_uint "$node_rank" || die "--node_rank must be a non-negative integer, got '$node_rank'"
((10#$node_rank < 10#$nnodes)) || die "--node_rank ($node_rank) must be below --nnodes ($nnodes)"
{ is_uint "$port" && ((10#$port >= 1 && 10#$port <= 65535)); } || die "--port must be in 1..65535, got '$port'"
[[ -n "$master_addr" ]] || die "--master_addr must not be empty"
gpus=$((10#$gpus)) nnodes=$((10#$nnodes)) node_rank=$((10#$node_rank)) port=$((10#$port))
case "$launcher" in
    torchrun | deepspeed) ;;
    *) die_usage "--launcher must be 'torchrun' or 'deepspeed', got '$launcher'" ;;
esac

if [[ -n "${PYTHON:-}" ]]; then
    python="$PYTHON"
elif [[ -x "$SCRIPT_DIR/.venv/bin/python" ]]; then
    python="$SCRIPT_DIR/.venv/bin/python"
else
    python="python3"
fi

# Last line only: some imports print banners to stdout.
probe_out="$("$python" -c "import torch; print(torch.cuda.device_count())")" \
    || die "could not import torch with '$python' (set PYTHON to the interpreter of your environment)"
visible="$(tail -n 1 <<<"$probe_out")"
is_uint "$visible" || die "unexpected GPU count from '$python': '$visible'"

# ---- a GPU machine whose GPUs torch cannot use: stop, unless --cpu ----
# (the usual cause: the default torch wheel's CUDA is newer than the driver). GPUs hidden on purpose
# (CUDA_VISIBLE_DEVICES empty or -1) are not this case.
driver_gpus() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true
    elif [[ -d /proc/driver/nvidia/gpus ]]; then
        find /proc/driver/nvidia/gpus -mindepth 1 -maxdepth 1 | wc -l
    else
        echo 0
    fi
}
hidden_on_purpose=0
[[ "${CUDA_VISIBLE_DEVICES-unset}" == "" || "${CUDA_VISIBLE_DEVICES-}" == "-1" ]] && hidden_on_purpose=1
if ((visible == 0 && force_cpu == 0 && hidden_on_purpose == 0)); then
    present="$(driver_gpus)"
    if ((present > 0)); then
        build="$("$python" -c "import torch; print(torch.__version__)" 2>/dev/null | tail -n 1)"
        die "$present NVIDIA GPU(s) on this machine but torch ${build:-?} sees none (a CUDA build newer" \
            "than the driver, or CUDA_VISIBLE_DEVICES); install a torch for this driver" \
            "(VLMRM_TORCH_SPEC, see README 'Set up'), or pass --cpu to run CPU processes"
    fi
fi

cpu_args=()
if ((visible > 0 && force_cpu == 0)); then
    if ((gpus > visible)); then
        msg="--gpus $gpus but only $visible GPU(s) visible on this node"
        [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]] && msg+=" (CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES)"
        die "$msg"
    fi
else
    reason="no GPUs visible"
    ((force_cpu)) && reason="--cpu"
    [[ "$launcher" == "torchrun" ]] \
        || die "$reason: the DeepSpeed launcher needs GPUs; use --launcher torchrun on CPU" \
            "(DeepSpeed ZeRO from the config still works there)"
    echo "$PROG: $reason: running $gpus CPU process(es) per node (gloo backend)" >&2
    # Before the user's extras so that they can still override these.
    cpu_args=(--use_cpu true --ddp_backend gloo)
    if [[ -z "${OMP_NUM_THREADS:-}" ]]; then
        cores="$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
        threads=$((cores / gpus))
        export OMP_NUM_THREADS=$((threads > 0 ? threads : 1))
    fi
fi

# One process checks the config (with the arguments the ranks get) and the master port, so that a
# mistake ends in one line instead of a traceback per rank.
PYTHONPATH="$SCRIPT_DIR${PYTHONPATH:+:$PYTHONPATH}" "$python" -m vlmrm.cli.check_launch \
    --port "$port" --node_rank "$node_rank" -- \
    "$config" ${cpu_args[@]+"${cpu_args[@]}"} ${extra_args[@]+"${extra_args[@]}"} || exit 2

if [[ "$launcher" == "torchrun" ]]; then
    cmd=("$python" -m torch.distributed.run
        --nproc_per_node "$gpus" --nnodes "$nnodes" --node_rank "$node_rank"
        --master_addr "$master_addr" --master_port "$port")
else
    # --no_local_rank: ranks come from the LOCAL_RANK env var, as under torchrun.
    cmd=("$python" -m deepspeed.launcher.runner --no_local_rank --master_addr "$master_addr" --master_port "$port")
    if ((nnodes > 1)); then
        cmd+=(--num_nodes "$nnodes" --num_gpus "$gpus" --no_ssh --node_rank "$node_rank")
    elif [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
        # With --num_gpus DeepSpeed drops CUDA_VISIBLE_DEVICES and takes GPUs 0..N-1; name the slots instead.
        IFS=',' read -r -a devices <<<"$CUDA_VISIBLE_DEVICES"
        slots="$(IFS=','; echo "${devices[*]:0:gpus}")"
        cmd+=(--include "localhost:$slots")
    else
        cmd+=(--num_gpus "$gpus")
    fi
fi
cmd+=("$TRAIN_SCRIPT" "$config" ${cpu_args[@]+"${cpu_args[@]}"} ${extra_args[@]+"${extra_args[@]}"})

env_note=""
[[ -n "${OMP_NUM_THREADS:-}" ]] && env_note="OMP_NUM_THREADS=$OMP_NUM_THREADS "
printf -v quoted '%q ' "${cmd[@]}"
echo "+ ${env_note}${quoted% }" >&2
exec "${cmd[@]}"
