"""run_distributed.sh builds the right launch command, and every shipped DeepSpeed config is valid.

The launcher runs for real, but with ``PYTHON`` pointing at a fake interpreter: asked ``-c ...`` (the
GPU-count probe) it prints ``$FAKE_GPUS``; asked to run the pre-launch check it records its arguments
beside itself and exits ``$FAKE_CHECK_STATUS``; otherwise it prints ``OMP_NUM_THREADS`` and then its argv,
one argument per line, so the exact command line is asserted without starting torchrun.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainingArguments
from transformers.integrations.deepspeed import unset_hf_deepspeed_config

from vlmrm.cli import check_launch

REPO = Path(__file__).resolve().parents[2]
DS_CONFIGS = sorted((REPO / "ds_config").glob("*.json"))

FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-c" ]; then echo "${FAKE_GPUS:-0}"; exit 0; fi
if [ "$2" = "vlmrm.cli.check_launch" ]; then echo "$@" > "$0.check"; exit "${FAKE_CHECK_STATUS:-0}"; fi
echo "OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
for arg in "$@"; do printf '%s\\n' "$arg"; done
"""

FAKE_NVIDIA_SMI = """#!/bin/sh
i=0
while [ "$i" -lt "${FAKE_DRIVER_GPUS:-0}" ]; do echo "GPU $i: Fake GPU (UUID: GPU-$i)"; i=$((i + 1)); done
"""
"""``nvidia-smi -L`` as the driver answers it: ``$FAKE_DRIVER_GPUS`` GPUs (none by default), so the
tests do not depend on the machine's own GPUs."""

# Variables the launcher reads; cleared so the host environment cannot leak into a test.
LAUNCHER_ENV = [
    "GPUS_PER_NODE",
    "MASTER_PORT",
    "NNODES",
    "NODE_RANK",
    "MASTER_ADDR",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "PYTHON",
]


@pytest.fixture
def launcher(tmp_path):
    """Run a copy of run_distributed.sh beside a stub train_rm.py, from a separate working directory.

    Returns ``run(*args, gpus=0, **env) -> (returncode, argv, stdout, stderr)`` where ``argv`` is what
    the fake interpreter received (``None`` if it was not launched). ``cwd`` holds ``cfg.yaml``.
    """
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(REPO / "run_distributed.sh", repo / "run_distributed.sh")
    (repo / "train_rm.py").write_text("raise SystemExit('not to be run in these tests')\n")
    fake = tmp_path / "fakepy"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (fake_bin / "nvidia-smi").chmod(0o755)
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "cfg.yaml").write_text("output_dir: out\n")

    def run(*args: str, gpus: int = 0, **env: str):
        full_env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
        full_env.update(PYTHON=str(fake), FAKE_GPUS=str(gpus), PATH=f"{fake_bin}:{os.environ['PATH']}")
        full_env.update(env)
        proc = subprocess.run(
            ["bash", str(repo / "run_distributed.sh"), *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        lines = proc.stdout.splitlines()
        argv = None
        if lines and lines[0].startswith("OMP_NUM_THREADS="):
            argv = lines[1:]
            run.omp_threads = lines[0].split("=", 1)[1]
        return proc.returncode, argv, proc.stdout, proc.stderr

    run.train_script = str(repo / "train_rm.py")
    run.check_args = fake.with_suffix(".check")
    return run


def torchrun_argv(train_script, nproc=2, nnodes=1, node_rank=0, addr="127.0.0.1", port=29500):
    return [
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--nnodes",
        str(nnodes),
        "--node_rank",
        str(node_rank),
        "--master_addr",
        addr,
        "--master_port",
        str(port),
        train_script,
        "cfg.yaml",
    ]


def test_config_and_port_are_checked_once_with_the_ranks_arguments(launcher):
    code, argv, _, _ = launcher("--config", "cfg.yaml", "--gpus", "2", "--port", "29611", "--", "--seed", "3")
    assert code == 0 and argv is not None
    checked = run_check_args(launcher)
    assert checked[:7] == ["-m", "vlmrm.cli.check_launch", "--port", "29611", "--node_rank", "0", "--"]
    assert checked[7:] == ["cfg.yaml", "--use_cpu", "true", "--ddp_backend", "gloo", "--seed", "3"]


def test_a_refused_check_launches_nothing(launcher):
    code, argv, _, _ = launcher("--config", "cfg.yaml", "--gpus", "2", FAKE_CHECK_STATUS="2")
    assert (code, argv) == (2, None)


def run_check_args(launcher) -> list[str]:
    return launcher.check_args.read_text().split()


def bound_port() -> tuple[socket.socket, int]:
    """A socket listening on a free loopback port (the test's own), and the port."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return taken, taken.getsockname()[1]


def run_real_launcher(folder: Path, port: int) -> subprocess.CompletedProcess:
    """run_distributed.sh on ``folder/cfg.yaml`` with this interpreter, for 2 ranks on ``port``."""
    return subprocess.run(
        [
            "bash",
            str(REPO / "run_distributed.sh"),
            "--config",
            "cfg.yaml",
            "--gpus",
            "2",
            "--port",
            str(port),
        ],
        cwd=folder,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_port_in_use_ends_in_one_line_before_any_rank(tmp_path):
    (tmp_path / "cfg.yaml").write_text("output_dir: out\n")
    taken, port = bound_port()
    with taken:
        proc = run_real_launcher(tmp_path, port)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "torch.distributed.run" not in proc.stderr
    assert (
        f"error: master port {port} is already in use on this node; pick another with --port" in proc.stderr
    )
    assert proc.stderr.count("error:") == 1


def test_check_refuses_a_bad_config_in_one_line(tmp_path, capsys, monkeypatch):
    for key in check_launch.single_process_world():
        monkeypatch.setenv(key, "")  # restored after the test: the check sets up a world of one
    (tmp_path / "cfg.yaml").write_text("output_dir: out\nlearning_rate: 1e-5\nlearning_rate: 2e-5\n")
    taken, port = bound_port()
    taken.close()
    assert (
        check_launch.main(["--port", str(port), "--", str(tmp_path / "cfg.yaml"), "--use_cpu", "true"]) == 2
    )
    message = "key 'learning_rate' is given twice (first on line 2)"
    assert capsys.readouterr().err == f"error: {tmp_path / 'cfg.yaml'}:3:1: {message}\n"


@pytest.mark.slow
def test_bad_config_under_run_distributed_is_one_line_not_a_traceback_per_rank(tmp_path):
    (tmp_path / "cfg.yaml").write_text("output_dir: out\nper_device_train_batch_size: 0\n")
    taken, port = bound_port()
    taken.close()
    proc = run_real_launcher(tmp_path, port)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cfg.yaml: per_device_train_batch_size: must be >= 1, got 0" in proc.stderr
    assert proc.stderr.count("error:") == 1


def test_script_is_executable_bash():
    script = REPO / "run_distributed.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_help_prints_usage(launcher):
    rc, argv, out, _ = launcher("--help")
    assert rc == 0 and argv is None
    assert "Usage:" in out and "--gpus N" in out and "--launcher L" in out


@pytest.mark.parametrize("gpus", ["0", "abc", "-1", "1.5", ""])
def test_gpus_must_be_positive_integer(launcher, gpus):
    rc, argv, _, err = launcher("--config", "cfg.yaml", "--gpus", gpus)
    assert rc == 2 and argv is None
    assert f"--gpus must be a positive integer, got '{gpus}'" in err


def test_gpus_from_env_is_validated_too(launcher):
    rc, argv, _, err = launcher("--config", "cfg.yaml", GPUS_PER_NODE="0")
    assert rc == 2 and argv is None
    assert "--gpus must be a positive integer" in err


def test_config_is_required_and_must_exist(launcher):
    rc, argv, _, err = launcher("--gpus", "2")
    assert rc == 2 and argv is None and "--config is required" in err
    rc, argv, _, err = launcher("--gpus", "2", "--config", "missing.yaml")
    assert rc == 2 and argv is None and "config file not found: missing.yaml" in err


def test_option_without_value_is_an_error(launcher):
    rc, argv, _, err = launcher("--config")
    assert rc == 2 and argv is None and "--config needs a value" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus"], "unknown option '--bogus'"),
        (["--learning_rate", "1e-5"], "unknown option '--learning_rate'"),  # belongs after --
        (["--launcher", "mpirun"], "--launcher must be 'torchrun' or 'deepspeed'"),
        (["--nnodes", "2", "--node_rank", "2"], "--node_rank (2) must be below --nnodes (2)"),
        (["--port", "70000"], "--port must be in 1..65535"),
    ],
)
def test_bad_options_are_rejected_with_usage(launcher, args, message):
    rc, argv, _, err = launcher("--config", "cfg.yaml", *args)
    assert rc == 2 and argv is None
    assert message in err


def test_cpu_run_uses_gloo_before_user_extras(launcher):
    rc, argv, _, err = launcher(
        "--config", "cfg.yaml", "--gpus", "2", "--", "--learning_rate", "5e-6", "--ddp_backend", "gloo"
    )
    assert rc == 0, err
    # The user's extras come last, so they win over the launcher's CPU defaults.
    cpu_args = ["--use_cpu", "true", "--ddp_backend", "gloo"]
    assert argv == torchrun_argv(launcher.train_script) + cpu_args + [
        "--learning_rate",
        "5e-6",
        "--ddp_backend",
        "gloo",
    ]
    assert "running 2 CPU process(es) per node (gloo backend)" in err
    assert launcher.omp_threads == str(max(1, len(os.sched_getaffinity(0)) // 2))


def test_gpus_torch_cannot_use_stop_the_launch_unless_cpu(launcher):
    """The driver lists GPUs, torch sees none (a CUDA build newer than the driver): one clear error,
    not N silent CPU processes; ``--cpu`` runs them on purpose, also on a machine whose GPUs work."""
    rc, argv, _, err = launcher("--config", "cfg.yaml", "--gpus", "2", FAKE_DRIVER_GPUS="2")
    assert rc == 2 and argv is None
    (line,) = err.strip().splitlines()
    assert "2 NVIDIA GPU(s) on this machine but torch" in line and "sees none" in line
    assert "VLMRM_TORCH_SPEC" in line and "--cpu" in line
    rc, argv, _, err = launcher("--config", "cfg.yaml", "--gpus", "2", "--cpu", FAKE_DRIVER_GPUS="2")
    assert rc == 0 and argv[-4:] == ["--use_cpu", "true", "--ddp_backend", "gloo"]
    assert "--cpu: running 2 CPU process(es)" in err
    rc, argv, _, _ = launcher("--config", "cfg.yaml", "--gpus", "2", "--cpu", gpus=2)
    assert rc == 0 and argv[-4:] == ["--use_cpu", "true", "--ddp_backend", "gloo"]
    rc, argv, _, _ = launcher(
        "--config", "cfg.yaml", "--gpus", "2", FAKE_DRIVER_GPUS="2", CUDA_VISIBLE_DEVICES=""
    )
    assert rc == 0 and argv is not None  # GPUs hidden on purpose: CPU processes, as asked


def test_cpu_run_keeps_users_omp_threads(launcher):
    rc, _, _, _ = launcher("--config", "cfg.yaml", "--gpus", "64", OMP_NUM_THREADS="3")
    assert rc == 0 and launcher.omp_threads == "3"
    rc, _, _, _ = launcher("--config", "cfg.yaml", "--gpus", "1024")
    assert rc == 0 and launcher.omp_threads == "1"  # never 0 threads


def test_defaults_are_eight_processes_on_port_29500(launcher):
    rc, argv, _, _ = launcher("--config", "cfg.yaml", gpus=8)
    assert rc == 0
    assert argv == torchrun_argv(launcher.train_script, nproc=8)


def test_env_is_honoured_and_flags_override_it(launcher):
    env = {
        "GPUS_PER_NODE": "3",
        "NNODES": "4",
        "NODE_RANK": "2",
        "MASTER_ADDR": "10.0.0.7",
        "MASTER_PORT": "29999",
    }
    rc, argv, _, _ = launcher("--config", "cfg.yaml", gpus=4, **env)
    assert rc == 0
    assert argv == torchrun_argv(launcher.train_script, 3, 4, 2, "10.0.0.7", 29999)

    flags = ["--gpus", "1", "--nnodes", "2", "--node_rank", "1", "--master_addr", "node0", "--port", "1234"]
    rc, argv, _, _ = launcher("--config", "cfg.yaml", *flags, gpus=4, **env)
    assert rc == 0
    assert argv == torchrun_argv(launcher.train_script, 1, 2, 1, "node0", 1234)


def test_extras_after_double_dash_pass_verbatim(launcher):
    extras = ["--run_name", "a b  c", "--eval_dim", "VQ", "TA", "--", "--gpus", "0", "$HOME", "*"]
    rc, argv, _, err = launcher("--config=cfg.yaml", "--gpus=2", "--", *extras, gpus=2)
    assert rc == 0, err
    assert argv == torchrun_argv(launcher.train_script) + extras


def test_gpu_run_has_no_cpu_arguments_and_prints_the_command(launcher):
    rc, argv, _, err = launcher("--config", "cfg.yaml", "--gpus", "2", gpus=2)
    assert rc == 0
    assert argv == torchrun_argv(launcher.train_script)
    assert "CPU" not in err
    command_line = [line for line in err.splitlines() if line.startswith("+ ")]
    assert len(command_line) == 1
    assert "-m torch.distributed.run --nproc_per_node 2" in command_line[0]
    assert command_line[0].rstrip().endswith(f"{launcher.train_script} cfg.yaml")


def test_more_processes_than_visible_gpus_is_an_error(launcher):
    rc, argv, _, err = launcher("--config", "cfg.yaml", "--gpus", "2", gpus=1)
    assert rc == 2 and argv is None
    assert "--gpus 2 but only 1 GPU(s) visible" in err
    rc, _, _, err = launcher("--config", "cfg.yaml", "--gpus", "2", gpus=1, CUDA_VISIBLE_DEVICES="5")
    assert rc == 2 and "CUDA_VISIBLE_DEVICES=5" in err


def test_deepspeed_launcher_needs_gpus(launcher):
    rc, argv, _, err = launcher("--config", "cfg.yaml", "--gpus", "2", "--launcher", "deepspeed")
    assert rc == 2 and argv is None
    assert "use --launcher torchrun on CPU" in err


def test_deepspeed_launcher_commands(launcher):
    tail = [launcher.train_script, "cfg.yaml", "--seed", "1"]
    head = [
        "-m",
        "deepspeed.launcher.runner",
        "--no_local_rank",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
    ]
    rc, argv, _, _ = launcher(
        "--config", "cfg.yaml", "--gpus", "2", "--launcher", "deepspeed", "--", "--seed", "1", gpus=4
    )
    assert rc == 0
    assert argv == head + ["29500", "--num_gpus", "2"] + tail

    # DeepSpeed's --num_gpus would drop CUDA_VISIBLE_DEVICES and take GPUs 0..N-1; the slots are named instead.
    rc, argv, _, _ = launcher(
        "--config",
        "cfg.yaml",
        "--gpus",
        "2",
        "--launcher",
        "deepspeed",
        "--",
        "--seed",
        "1",
        gpus=3,
        CUDA_VISIBLE_DEVICES="4,5,6",
    )
    assert rc == 0
    assert argv == head + ["29500", "--include", "localhost:4,5"] + tail

    rc, argv, _, _ = launcher(
        "--config",
        "cfg.yaml",
        "--gpus",
        "2",
        "--launcher",
        "deepspeed",
        "--nnodes",
        "2",
        "--node_rank",
        "1",
        "--",
        "--seed",
        "1",
        gpus=2,
    )
    assert rc == 0
    assert (
        argv == head + ["29500", "--num_nodes", "2", "--num_gpus", "2", "--no_ssh", "--node_rank", "1"] + tail
    )


# ---------------------------------------------------------------- DeepSpeed configs


def _auto_keys(config: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        if isinstance(value, dict):
            keys += _auto_keys(value, f"{prefix}{key}.")
        elif value == "auto":
            keys.append(prefix + key)
    return keys


@pytest.fixture
def no_global_ds_config():
    """TrainingArguments(deepspeed=...) registers a process-wide config (ZeRO-3 changes model loading)."""
    yield
    unset_hf_deepspeed_config()


def test_expected_ds_configs_are_shipped():
    assert [p.name for p in DS_CONFIGS] == ["zero0.json", "zero2.json", "zero3.json", "zero3_offload.json"]


@pytest.mark.parametrize("path", DS_CONFIGS, ids=lambda p: p.stem)
def test_ds_config_is_accepted_by_trainer_and_deepspeed(path, tmp_path, no_global_ds_config):
    from deepspeed.runtime.config import DeepSpeedConfig

    raw = json.loads(path.read_text())
    # HF Trainer builds the optimizer and scheduler (our parameter groups); the config must not.
    assert "optimizer" not in raw and "scheduler" not in raw
    stage = raw["zero_optimization"]["stage"]
    assert stage == {"zero0": 0, "zero2": 2, "zero3": 3, "zero3_offload": 3}[path.stem]
    if stage == 3:
        # Without it Trainer.save_model under ZeRO-3 writes no usable full state dict.
        assert raw["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    if "offload_optimizer" in raw["zero_optimization"]:
        # Otherwise accelerate swaps the Trainer's torch optimizer for DeepSpeedCPUAdam.
        assert raw["zero_force_ds_cpu_optimizer"] is False

    args = TrainingArguments(
        output_dir=str(tmp_path),
        deepspeed=str(path),
        use_cpu=True,
        bf16=True,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        max_grad_norm=0.5,
    )
    hf_config = args.hf_deepspeed_config
    # What Trainer does once the model exists: fill the hidden-size based "auto" values.
    model = SimpleNamespace(config=SimpleNamespace(text_config=SimpleNamespace(hidden_size=64)))
    hf_config.trainer_config_finalize(args, model, num_training_steps=10)
    config = hf_config.config
    assert _auto_keys(config) == []
    assert config["train_micro_batch_size_per_gpu"] == 2
    assert config["gradient_accumulation_steps"] == 4
    assert config["train_batch_size"] == 2 * 4 * args.world_size
    assert config["gradient_clipping"] == 0.5
    assert config["bf16"]["enabled"] is True and config["fp16"]["enabled"] is False

    # DeepSpeed's own parser forbids unknown ZeRO keys, so typos fail here rather than on a GPU node.
    ds_config = DeepSpeedConfig(config)
    assert ds_config.zero_optimization_stage == stage
