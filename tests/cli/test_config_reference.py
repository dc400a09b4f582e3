"""docs/configuration.md is generated from the config dataclasses and must stay equal to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlmrm.cli.config_reference import REFERENCE_TASKS, field_rows, main, render_reference

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_page_is_the_generated_reference():
    assert PAGE.read_text() == render_reference(), (
        "docs/configuration.md is stale: python -m vlmrm.cli.config_reference --out docs/configuration.md"
    )


@pytest.mark.parametrize(
    "cls", [cls for _, _, classes in REFERENCE_TASKS for cls in classes], ids=lambda c: c.__name__
)
def test_every_key_has_a_type_and_a_help_text(cls):
    rows = field_rows(cls)
    assert rows
    assert [key for key, kind, _, help_text in rows if not kind or not help_text.strip()] == []


def test_nested_sections_are_dotted_and_training_arguments_list_only_our_keys():
    from vlmrm.reward.config import RewardTrainingArguments
    from vlmrm.vtg.data_config import VTGDataConfig

    keys = [row[0] for row in field_rows(VTGDataConfig)]
    assert "video.resolution.height" in keys and "duration_batching.target_batch_duration" in keys
    reward_keys = [row[0] for row in field_rows(RewardTrainingArguments)]
    assert "loss_type" in reward_keys and "learning_rate" not in reward_keys


def test_cli_prints_or_writes_the_page(tmp_path, capsys):
    assert main([]) == 0
    assert capsys.readouterr().out == render_reference()
    assert main(["--out", str(tmp_path / "c.md")]) == 0
    assert (tmp_path / "c.md").read_text() == render_reference()
