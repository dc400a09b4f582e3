"""A saved tiny reward checkpoint (with normalisation statistics) and a real server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_run_values
from vlmrm.serve.process import ServerProcess

REPO = Path(__file__).resolve().parents[2]
NORMALIZATION = {
    "VQ": {"mean": 0.25, "std": 2.0},
    "MQ": {"mean": -0.5, "std": 0.5},
    "TA": {"mean": 0.0, "std": 4.0},
}


@pytest.fixture(scope="session")
def reward_checkpoint(tiny_cache, synthetic_pairs, tmp_path_factory) -> Path:
    """An untrained reward model saved as training saves one, normalisation statistics included."""
    from vlmrm.modeling.loading import build_reward_model
    from vlmrm.modeling.reward_model import attach_spec
    from vlmrm.reward.config import parse_config
    from vlmrm.testing.tiny import tiny_checkpoint

    out = tmp_path_factory.mktemp("reward_checkpoint")
    values = tiny_run_values(tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache), synthetic_pairs, out)
    cfg = parse_config(values=values)
    model, processor = build_reward_model(cfg.model, cfg.data, cfg.training)
    spec = model.reward_spec
    spec.normalization = NORMALIZATION
    attach_spec(model.config, spec)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def start_server(checkpoint: Path, log: Path, *options: str) -> ServerProcess:
    """The real server on CPU in a subprocess that imports this worktree's vlmrm."""
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return ServerProcess.start(checkpoint, log, "--device", "cpu", *options, env=env)
