from pathlib import Path

import pytest
import yaml

from vlmrm.core.config import ConfigError
from vlmrm.reward.config import parse_config


def write_yaml(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_yaml_load_converts_types_and_aliases(tmp_path):
    path = tmp_path / "cfg.yaml"
    # Written by hand: PyYAML reads 1e-5 (no dot) as a *string*; it must arrive as a float.
    path.write_text(
        "output_dir: out\nlearning_rate: 1e-5\neval_dim: [VQ, TA]\nfreeze_vit: true\n"
        "max_seq_length: 512\nlora_namespan_exclude: \"['lm_head', 'rm_head']\"\nuse_cpu: true\n"
    )
    cfg = parse_config(path)
    assert cfg.training.learning_rate == pytest.approx(1e-5)
    assert isinstance(cfg.training.learning_rate, float)
    assert cfg.data.eval_dim == ["VQ", "TA"]
    assert cfg.model.freeze_vision_tower is True
    assert cfg.training.max_length == 512
    assert cfg.model.lora_namespan_exclude == ["lm_head", "rm_head"]
    assert cfg.model.output_dim == 2  # one head output per dimension with reward_token=last
    assert cfg.training.remove_unused_columns is False


def test_command_line_overrides_yaml(tmp_path):
    path = write_yaml(
        tmp_path, {"output_dir": "out", "learning_rate": 1.0e-4, "eval_dim": ["VQ", "MQ", "TA"]}
    )
    cfg = parse_config(path, ["--learning_rate", "5e-6", "--eval_dim", "MQ", "--no_use_tied_data"])
    assert cfg.training.learning_rate == pytest.approx(5e-6)
    assert cfg.data.eval_dim == ["MQ"]
    assert cfg.data.use_tied_data is False


@pytest.mark.parametrize(
    "values, overrides, message",
    [
        ({"learnin_rate": 1e-5}, [], "unknown key 'learnin_rate'; did you mean 'learning_rate'?"),
        ({"eval_dims": ["VQ"]}, [], "did you mean 'eval_dim'?"),
        ({}, ["--freeze_vision", "true"], "command line: unknown key 'freeze_vision'"),
        ({"fps": "fast"}, [], "argument --fps: invalid float value: 'fast'"),
        ({"loss_type": "hinge"}, [], "invalid choice: 'hinge'"),
        ({"reward_token": "special"}, [], "reward_token: 'special' needs use_special_tokens: true"),
        ({"output_dim": 2}, [], "output_dim: 2 does not fit"),
        ({"tie_k": 1.0}, [], "tie_k"),
        ({"eval_dim": ["VQ", "VQ"]}, [], "repeated dimension"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, values, overrides, message):
    path = write_yaml(tmp_path, {"output_dir": "out", **values})
    with pytest.raises(ConfigError) as err:
        parse_config(path, overrides)
    assert message in str(err.value)


def test_special_tokens_take_one_shared_or_one_per_dimension_output(tmp_path):
    special = {
        "output_dir": "out",
        "use_special_tokens": True,
        "reward_token": "special",
        "eval_dim": ["VQ", "MQ", "TA"],
    }
    assert parse_config(write_yaml(tmp_path, special)).model.output_dim == 1
    assert parse_config(write_yaml(tmp_path, {**special, "output_dim": 3})).model.output_dim == 3
    with pytest.raises(ConfigError, match="output_dim: 2 does not fit .* expected 1 or 3"):
        parse_config(write_yaml(tmp_path, {**special, "output_dim": 2}))


def test_yaml_never_executes_tags(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("output_dir: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml:1:13: could not determine a constructor for the tag"):
        parse_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        parse_config(tmp_path / "nope.yaml")
