"""Item: a config error lists every unknown key, each with its suggestion, not only the first."""

from __future__ import annotations

import pytest
import yaml

from vlmrm.core.config import ConfigError
from vlmrm.reward.config import parse_config
from vlmrm.vtg.config import load_vtg_task_config


def test_flat_config_names_every_unknown_key_with_its_suggestion(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(
        yaml.safe_dump(
            {"learnin_rate": 1e-5, "lora_rnak": 8, "fpss": 2, "zzzz_qqqq": 1, "fps": 2}, sort_keys=False
        )
    )
    with pytest.raises(ConfigError) as err:
        parse_config(path)
    assert str(err.value) == (
        f"{path}: 4 unknown keys: 'learnin_rate' (did you mean 'learning_rate'?), "
        "'lora_rnak' (did you mean 'lora_r'?), 'fpss' (did you mean 'fps'?), 'zzzz_qqqq'"
    )


def test_one_unknown_key_keeps_the_short_message(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'learnin_rate'; did you mean 'learning_rate'\?$"):
        parse_config(values={"learnin_rate": 1e-5})


def test_nested_section_names_every_unknown_key(tmp_path):
    path = tmp_path / "vtg.yaml"
    path.write_text(
        yaml.safe_dump({"task": "vtg_sft", "lora": {"rnak": 8, "enabledd": True}}, sort_keys=False)
    )
    with pytest.raises(ConfigError) as err:
        load_vtg_task_config(path)
    message = str(err.value)
    assert "2 unknown keys: 'lora.rnak'" in message and "'lora.enabledd' (did you mean 'enabled'?)" in message


def test_command_line_unknown_keys_are_all_named(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config(values={"fps": 2}, overrides=["--learnin_rate", "1e-5"])
    assert "command line" in str(err.value) and "did you mean 'learning_rate'" in str(err.value)
