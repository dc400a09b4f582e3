"""Fail fast and loud: a missing model, checkpoint or data path is one clear line before anything
loads, and an evaluation that could not evaluate a checkpoint ends non-zero (issue 19)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import eval_rm
from vlmrm.cli.tasks import run_eval_task
from vlmrm.core.problems import ConfigError, EvaluationFailed
from vlmrm.reward import score
from vlmrm.reward.config import check_run_paths, parse_config
from vlmrm.reward.evaluate import check_eval_config, failure_lines, parse_eval_config, run_evaluation

ROOT = Path(__file__).resolve().parents[2]
HUB_TYPO = "Qwen/Qwen2-VL-2B-Instrukt"
HUB_TYPO_BUDGET_S = 20.0
"""A Hub-id typo offline must be reported in seconds, not after transformers' minutes of retries."""
CONFIG_ERROR = 2


@pytest.fixture
def data(tmp_path) -> Path:
    csv = tmp_path / "pairs.csv"
    csv.write_text("path_A,path_B,prompt,VQ\n")
    return csv


def train_values(tmp_path: Path, data: Path, **overrides) -> dict:
    return {
        "model_name_or_path": str(tmp_path),  # an existing folder: only the key under test is wrong
        "meta_data": str(data),
        "eval_dim": ["VQ"],
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "report_to": "none",
        **overrides,
    }


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "model_name_or_path",
            "./no/such/model",
            "directory not found: ./no/such/model (key model_name_or_path)",
        ),
        ("init_from", "/no/such/checkpoint", "directory not found: /no/such/checkpoint (key init_from)"),
        ("meta_data", "/no/such/train.csv", "file not found: /no/such/train.csv (key meta_data)"),
        ("meta_data_test", "/no/such/test.csv", "file not found: /no/such/test.csv (key meta_data_test)"),
        ("data_dir", "/no/such/videos", "directory not found: /no/such/videos (key data_dir)"),
    ],
)
def test_training_paths_are_checked(tmp_path, data, key, value, message):
    cfg = parse_config(values=train_values(tmp_path, data, **{key: value}))
    with pytest.raises(ConfigError) as caught:
        check_run_paths(cfg)
    assert str(caught.value) == message


def test_training_paths_that_exist_pass(tmp_path, data):
    check_run_paths(parse_config(values=train_values(tmp_path, data, data_dir=str(tmp_path))))


def eval_values(tmp_path: Path, data: Path, **overrides) -> dict:
    return {
        "model_dirs": [str(tmp_path / "missing_run")],
        "dataset_path": str(data),
        "output_dir": str(tmp_path / "eval"),
        "report": False,
        **overrides,
    }


def test_eval_paths_are_checked(tmp_path, data):
    with pytest.raises(ConfigError, match=r"^directory not found: .*missing_run \(key model_dirs\)$"):
        check_eval_config(parse_eval_config(values=eval_values(tmp_path, data)))
    missing_data = eval_values(
        tmp_path, data, model_dirs=[str(tmp_path)], dataset_path=str(tmp_path / "x.csv")
    )
    with pytest.raises(ConfigError, match=r"^file not found: .*x\.csv \(key dataset_path\)$"):
        check_eval_config(parse_eval_config(values=missing_data))
    no_base = eval_values(tmp_path, data, model_dirs=[str(tmp_path)], base_model_path="./no/base")
    with pytest.raises(ConfigError, match=r"^directory not found: ./no/base \(key base_model_path\)$"):
        check_eval_config(parse_eval_config(values=no_base))
    check_eval_config(parse_eval_config(values=eval_values(tmp_path, data, keep_going=True)))


def test_a_model_dir_without_checkpoints_stops_the_evaluation(tmp_path, data):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    config = parse_eval_config(values=eval_values(tmp_path, data, model_dirs=[str(empty)]))
    with pytest.raises(EvaluationFailed) as caught:
        run_evaluation(config)
    assert caught.value.failures == [f"{empty}: no checkpoints found"]


def test_keep_going_evaluates_the_rest_and_still_fails(tmp_path, data):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    values = eval_values(
        tmp_path, data, model_dirs=[str(tmp_path / "missing_run"), str(empty)], keep_going=True
    )
    rows = run_evaluation(parse_eval_config(values=values))
    assert failure_lines(rows) == [
        f"{tmp_path / 'missing_run'}: directory not found (key model_dirs)",
        f"{empty}: no checkpoints found",
    ]
    assert (tmp_path / "eval" / "evaluation_results.csv").is_file()  # what was evaluated is still written
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(values))
    with pytest.raises(EvaluationFailed) as caught:
        run_eval_task(str(config), [])
    assert len(caught.value.failures) == 2 and caught.value.lines[-1].startswith("results: ")


def test_eval_rm_exits_non_zero_with_one_error_line_per_failure(tmp_path, data, capsys):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(eval_values(tmp_path, data, model_dirs=[str(empty)])))
    assert eval_rm.main([str(config), "--keep_going"]) == eval_rm.EVALUATION_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: {empty}: no checkpoints found"
    assert eval_rm.main([str(config), "--model_dirs", str(tmp_path / "gone")]) == CONFIG_ERROR
    assert capsys.readouterr().err.strip().endswith("(key model_dirs)")


def test_score_checks_the_checkpoint_and_the_media_before_loading(tmp_path, capsys):
    assert score.main(["--checkpoint", "./no/ckpt", "--video", "a.mp4", "--prompt", "p"]) == CONFIG_ERROR
    assert capsys.readouterr().err.strip() == "error: directory not found: ./no/ckpt (key --checkpoint)"
    missing = tmp_path / "missing.mp4"
    assert (
        score.main(["--checkpoint", str(tmp_path), "--video", str(missing), "--prompt", "p"]) == CONFIG_ERROR
    )
    assert capsys.readouterr().err.strip() == f"error: file not found: {missing} (key --video)"


# ---- the entry scripts, as a user runs them ----------------------------------------------------


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        check=False,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ") or "Traceback" in line]


@pytest.mark.slow
def test_train_rm_hub_id_typo_offline_is_one_line_in_seconds(tmp_path, data):
    """Timed inside the process from the call of ``main``: the imports every config error pays (torch,
    transformers) are not what this is about; the minutes of Hub retries are."""
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(train_values(tmp_path, data, model_name_or_path=HUB_TYPO)))
    timed = (
        "import sys, time; import vlmrm.reward.config, train_rm; start = time.monotonic(); "
        "code = train_rm.main(sys.argv[1:]); print(f'elapsed {time.monotonic() - start}', file=sys.stderr); "
        "sys.exit(code)"
    )
    result = run_script("-c", timed, str(config), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == CONFIG_ERROR
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"error: model_name_or_path: {HUB_TYPO} is neither a local folder")
    assert f"huggingface-cli download {HUB_TYPO}" in line and "HF_HUB_OFFLINE" in line
    elapsed = float(result.stderr.strip().splitlines()[-1].split()[-1])
    assert elapsed < HUB_TYPO_BUDGET_S


@pytest.mark.slow
def test_run_eval_sh_missing_dataset_is_one_line(tmp_path, data):
    run = tmp_path / "run"
    run.mkdir()
    config = tmp_path / "eval.yaml"
    values = eval_values(tmp_path, data, model_dirs=[str(run)], dataset_path=str(tmp_path / "gone.csv"))
    config.write_text(yaml.safe_dump(values))
    env = {"PATH": os.environ["PATH"], "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        ["bash", str(ROOT / "run_eval.sh"), str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == CONFIG_ERROR
    assert error_lines(result.stderr) == [
        f"error: file not found: {tmp_path / 'gone.csv'} (key dataset_path)"
    ]


def test_vtg_and_grm_model_paths_are_checked_before_loading(tmp_path):
    """The other tasks call the same check first thing: no model loads, no output folder is made."""
    from vlmrm.grm.evaluate import parse_grm_eval_config, run_grm_evaluation
    from vlmrm.vtg.config import check_model_paths, load_vtg_task_config
    from vlmrm.vtg.evaluate import parse_vtg_eval_config, run_vtg_evaluation

    values = yaml.safe_load((ROOT / "training_configs" / "vtg_sft_tiny.yaml").read_text())
    values["data_config"] = str(ROOT / values["data_config"])
    values["model"]["name_or_path"] = "./no/such/vtg_model"
    values["training"]["output_dir"] = str(tmp_path / "vtg")
    sections = load_vtg_task_config(values=values).sections  # parsing alone does not check paths
    with pytest.raises(
        ConfigError, match=r"^directory not found: ./no/such/vtg_model \(key model.name_or_path\)$"
    ):
        check_model_paths(sections)
    jsonl = tmp_path / "vtg.jsonl"
    jsonl.write_text("")
    vtg_eval = parse_vtg_eval_config(values={"annotation_file": str(jsonl), "model_dir": "./no/vtg_run"})
    with pytest.raises(ConfigError, match=r"^directory not found: ./no/vtg_run \(key model_dir\)$"):
        run_vtg_evaluation(vtg_eval)
    out = tmp_path / "grm_eval"
    grm_eval = parse_grm_eval_config(
        values={"model_dir": "./no/grm_run", "data_path": f"t2v:{jsonl}", "output_dir": str(out)}
    )
    with pytest.raises(ConfigError, match=r"^directory not found: ./no/grm_run \(key model_dir\)$"):
        run_grm_evaluation(grm_eval)
    assert not out.exists()
