"""``python -m vlmrm.data.validate --config`` and ``train_rm.py`` on a config that cannot be read:
one line on stderr naming the file (line and column, or key), a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vlmrm.cli.validate import CONFIG_ERROR_STATUS, main

REPO = Path(__file__).resolve().parents[2]
BAD_CONFIGS = [
    (b"meta_data: a.csv\n\teval_dim: [VQ]\n", "2:1: while scanning for the next token"),
    (b"meta_data: a.csv\nmeta_data: b.csv\n", "2:1: key 'meta_data' is given twice (first on line 1)"),
    (b"meta_data: caf\xe9.csv\n", "1:15: byte 0xe9 is not UTF-8"),
    (b"a: 1\n---\nb: 2\n", "2:1: expected a single document in the stream"),
    (b"fps: .nan\n", " fps: must be a finite number, got nan"),
    (b"eval_dim: {VQ: 1}\n", " eval_dim: expected list[str], got a dict {'VQ': 1}"),
    (b"fps: [1, 2]\n", " fps: expected float, got a list [1, 2]"),
]


@pytest.mark.parametrize(("content", "message"), BAD_CONFIGS)
def test_validate_config_error_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(content)
    assert main(["--config", str(path)]) == CONFIG_ERROR_STATUS
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:") and message in err and err.count("\n") == 1


def test_vtg_data_config_error_is_one_line(tmp_path, capsys):
    path = tmp_path / "data.yaml"
    path.write_text("video:\n  fps: -1\n")
    assert main(["--task", "vtg", "--config", str(path)]) == CONFIG_ERROR_STATUS
    assert capsys.readouterr().err == f"error: {path}: video.fps: must be >= 0, got -1\n"


@pytest.mark.parametrize(
    "command",
    [["-m", "vlmrm.data.validate", "--config"], [str(REPO / "train_rm.py")]],
    ids=["validate", "train_rm"],
)
def test_no_traceback_from_a_bad_config(tmp_path, command):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"output_dir: out\nlearning_rate: 1e-5\nlearning_rate: 2e-5\n")
    proc = subprocess.run(
        [sys.executable, *command, str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == CONFIG_ERROR_STATUS and "Traceback" not in proc.stderr
    assert f"error: {path}:3:1: key 'learning_rate' is given twice (first on line 2)" in proc.stderr
