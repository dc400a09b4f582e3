"""``train_rm.py`` / ``eval_rm.py``: ``--help`` lists every config key, ``--print_config`` prints the
resolved config; both exit 0 without loading a model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import eval_rm
import train_rm
from vlmrm.cli.help import EVAL_CONFIGS, TRAIN_CONFIGS, render_help
from vlmrm.cli.tasks import EVAL_TASKS, TRAIN_TASKS

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "training_configs" / "quickstart_cpu.yaml"
EVAL_EXAMPLE = ROOT / "training_configs" / "eval_config_example.yaml"


def key_help(text: str, key: str) -> str:
    """The help line printed under ``key``'s row."""
    lines = text.splitlines()
    row = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}  ("))
    return lines[row + 1].strip()


def test_training_help_lists_every_key_with_its_help():
    text = render_help(train_rm.__doc__, evaluation=False, width=100)
    assert key_help(text, "learning_rate").startswith("The initial learning rate")
    assert key_help(text, "eval_dim") == "Label columns to learn, one reward each (1..N)."
    assert "    eval_dim  (list[str]; default: ['VQ', 'MQ', 'TA'])" in text
    assert "model.name_or_path  (" in text and "`" not in text and "|---|" not in text
    assert "keep_going  (" not in text  # an evaluation key


def test_evaluation_help_lists_the_evaluation_keys():
    text = render_help(eval_rm.__doc__, evaluation=True, width=100)
    assert key_help(text, "keep_going").startswith("Evaluate the other checkpoints")
    assert "model_dirs  (" in text and "learning_rate  (" not in text


def test_every_task_can_print_its_config():
    assert set(TRAIN_CONFIGS) == set(TRAIN_TASKS) and set(EVAL_CONFIGS) == set(EVAL_TASKS)


@pytest.mark.parametrize("argv", [["--help"], ["-h"], [str(QUICKSTART), "--help"]])
def test_help_exits_zero(argv, capsys):
    assert train_rm.main(argv) == 0
    assert "learning_rate  (" in capsys.readouterr().out


def test_print_config_applies_overrides_and_defaults(capsys):
    assert train_rm.main([str(QUICKSTART), "--learning_rate", "3e-4", "--print_config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["learning_rate"] == pytest.approx(3e-4)  # the override
    assert config["eval_dim"] == ["VQ", "MQ", "TA"]  # the file
    assert config["tie_k"] == 5.0 and config["margin"] == 0.5  # a file value and a default
    assert eval_rm.main([str(EVAL_EXAMPLE), "--print_config", "--eval_batch_size", "2"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["eval_batch_size"] == 2 and config["keep_going"] is False


def test_print_config_reports_a_config_error(capsys):
    assert train_rm.main([str(QUICKSTART), "--learnin_rate", "1", "--print_config"]) == 2
    assert "did you mean 'learning_rate'" in capsys.readouterr().err


@pytest.mark.slow
def test_script_help_as_run():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, check=False
        )

    shown = run("train_rm.py", str(QUICKSTART), "--help")  # --print_config: in-process tests above
    assert shown.returncode == 0 and "learning_rate  (" in shown.stdout and "eval_dim  (" in shown.stdout
