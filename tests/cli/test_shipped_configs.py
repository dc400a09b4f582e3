"""Every YAML under training_configs/ parses with the real parsers, and every repo file it names exists."""

from pathlib import Path

import pytest
import yaml

from vlmrm.grm.evaluate import parse_grm_eval_config
from vlmrm.grm.sft import load_grm_sft_config
from vlmrm.reward.config import parse_config
from vlmrm.reward.evaluate import parse_eval_config
from vlmrm.vtg.config import load_vtg_task_config
from vlmrm.vtg.data_config import load_vtg_data_config
from vlmrm.vtg.evaluate import parse_vtg_eval_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "training_configs").rglob("*.yaml"))
GENERATED = ("data", "outputs", "evaluation_results")
"""Top-level folders that runs create (quickstart data, outputs): not expected in a checkout."""


def repo_references(values: dict) -> list[str]:
    """String values that are relative paths into the repo's own folders (e.g. ds_config/zero2.json)."""
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} - set(GENERATED)
    found = []
    for value in values.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                found += repo_references(item)
            elif isinstance(item, str) and not item.startswith("/") and item.split("/", 1)[0] in folders:
                found.append(item)
    return found


def test_there_are_configs():
    assert len(CONFIGS) >= 14
    tasks = {yaml.safe_load(p.read_text()).get("task") for p in CONFIGS}
    assert {"grm_sft", "grm"} <= tasks


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_its_repo_files_exist(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    values = yaml.safe_load(path.read_text())
    task = values.get("task", "reward_model")
    if "dataset" in values:  # a VTG data config (training_configs/vtg/)
        load_vtg_data_config(path)
    elif task in ("vtg_sft", "vtg_grpo"):
        config = load_vtg_task_config(path, ["--use_cpu", "true"])
        assert config.training.output_dir and config.data.video.max_frames >= 2
    elif task == "vtg":
        parse_vtg_eval_config(values)
    elif task == "grm_sft":
        config = load_grm_sft_config(path, ["--use_cpu", "true"])
        assert config.training.output_dir and config.sections.data
    elif task == "grm":
        parse_grm_eval_config(values)
    elif "model_dirs" in values:
        parse_eval_config(path)
    else:
        cfg = parse_config(path, ["--use_cpu", "true"])  # bf16 configs are for GPUs; parse them here on CPU
        assert cfg.data.eval_dim
    for reference in repo_references(values):
        assert (ROOT / reference).exists(), f"{path.name}: {reference} does not exist"
