"""Partially labelled rows: a missing label (empty cell or VideoAlign's ``invalid``) masks that
dimension of the pair; the others train. Counted per dimension in validation."""

from __future__ import annotations

import math

import pytest

from vlmrm.core.problems import DataValidationError
from vlmrm.pairs.validate import validate_video_pairs
from vlmrm.pairs.video_pairs import labels_tensor, load_video_pairs

ROWS = [
    {"path_A": "a.mp4", "path_B": "b.mp4", "prompt": "p", "VQ": "A", "MQ": "", "TA": "same"},
    {"path_A": "a.mp4", "path_B": "b.mp4", "prompt": "p", "VQ": "invalid", "MQ": "B", "TA": "A"},
    {"path_A": "a.mp4", "path_B": "b.mp4", "prompt": "p", "VQ": "B", "MQ": "INVALID", "TA": "B"},
]


def test_missing_labels_are_masked_not_rejected(make_csv):
    table = load_video_pairs(make_csv(ROWS), ["VQ", "MQ", "TA"])
    assert [p.labels for p in table.pairs] == [(1, None, 0), (None, -1, 1), (-1, None, -1)]
    assert {dim: c["missing"] for dim, c in table.label_counts().items()} == {"VQ": 1, "MQ": 2, "TA": 0}
    y = labels_tensor(table.pairs[0].labels)
    assert y[0] == 1 and math.isnan(y[1]) and y[2] == 0


def test_a_row_without_any_label_is_an_error(make_csv):
    rows = [{**ROWS[0], "VQ": "", "MQ": "invalid", "TA": ""}]
    with pytest.raises(DataValidationError, match=r"no label in any of \['VQ', 'MQ', 'TA'\]"):
        load_video_pairs(make_csv(rows), ["VQ", "MQ", "TA"])


def test_validation_reports_masked_labels_per_dimension(make_csv, make_video):
    make_video("a.mp4")
    make_video("b.mp4")
    report = validate_video_pairs(make_csv(ROWS), ["VQ", "MQ", "TA"])
    assert report.summary["masked_labels"] == {"VQ": 1, "MQ": 2, "TA": 0}
    assert report.summary["labels"]["MQ"] == {"A": 0, "B": 1, "same": 0, "missing": 2}
    assert not [p for p in report.problems if p.kind == "unknown_label"]


def test_score_columns_give_per_pair_score_differences(make_csv):
    header = ["path_A", "path_B", "prompt", "VQ", "MQ", "MOS_A_VQ", "MOS_B_VQ", "MOS_A_MQ", "MOS_B_MQ"]
    rows = [
        {**ROWS[0], "MOS_A_VQ": "3.5", "MOS_B_VQ": "2.0", "MOS_A_MQ": "", "MOS_B_MQ": ""},  # MQ missing
        {**ROWS[2], "MQ": "A", "MOS_A_VQ": "1", "MOS_B_VQ": "4.25", "MOS_A_MQ": "2", "MOS_B_MQ": "2"},
    ]
    from vlmrm.pairs.video_pairs import load_video_pairs

    table = load_video_pairs(make_csv(rows, header=header), ["VQ", "MQ"], score_columns="MOS_{side}_{dim}")
    assert [p.score_diffs for p in table.pairs] == [(1.5, None), (-3.25, 0.0)]
    bad = [{**rows[1], "MOS_B_VQ": "n/a"}]
    with pytest.raises(DataValidationError, match=r"\[MOS_B_VQ\]: not a finite score: 'n/a'"):
        load_video_pairs(
            make_csv(bad, header=header, name="bad.csv"), ["VQ", "MQ"], score_columns="MOS_{side}_{dim}"
        )


@pytest.mark.slow
def test_validate_cli_shows_masked_labels(make_csv, make_video):
    import json
    import subprocess
    import sys

    make_video("a.mp4")
    make_video("b.mp4")
    result = subprocess.run(
        [sys.executable, "-m", "vlmrm.data.validate", "--file", str(make_csv(ROWS))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["masked_labels"] == {"VQ": 1, "MQ": 2, "TA": 0}
