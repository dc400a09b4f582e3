"""Every bad-input case is reported with file, line and column before training starts."""

import json
import subprocess
import sys

import numpy as np
import pytest

from vlmrm.core.problems import DataValidationError
from vlmrm.media.video import resolve_backend
from vlmrm.pairs.validate import validate_video_pairs
from vlmrm.reward.config import parse_config
from vlmrm.reward.validate import validate_run_data
from vlmrm.testing.synthetic import write_mp4

DIMS = ["VQ", "MQ", "TA"]


def row(a, b, **extra):
    return {"path_A": a, "path_B": b, "prompt": "a red square", "VQ": "A", "MQ": "B", "TA": "same", **extra}


@pytest.fixture
def good_videos(make_video):
    make_video("videos/a.mp4", num_frames=16, fps=8)
    make_video("videos/b.mp4", num_frames=16, fps=8)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_clean_file_passes_with_summary(make_csv, good_videos, backend):
    csv_path = make_csv([row("videos/a.mp4", "videos/b.mp4"), row("videos/b.mp4", "videos/a.mp4", VQ="same")])
    report = validate_video_pairs(csv_path, DIMS, backend=resolve_backend(backend))
    assert report.problems == []
    assert not report.failed(strict=True)
    summary = report.summary
    assert summary["rows"] == 2 and summary["pairs"] == 2 and summary["videos"] == 2
    assert summary["ties"] == {"VQ": 1, "MQ": 0, "TA": 2}
    assert summary["duration_s"]["max"] == pytest.approx(16 / 8)
    assert summary["frames_sampled"] == {"min": 4, "max": 4}


def test_every_video_problem_is_reported(make_csv, good_videos, tmp_path):
    (tmp_path / "videos" / "empty.mp4").write_bytes(b"")
    (tmp_path / "videos" / "junk.mp4").write_bytes(b"garbage" * 50)
    write_mp4(tmp_path / "videos" / "one.mp4", np.zeros((1, 64, 64, 3), np.uint8), 8, "mpeg4")
    rows = [
        row("videos/a.mp4", "videos/missing.mp4"),  # line 2
        row("videos/empty.mp4", "videos/b.mp4"),  # line 3
        row("videos/junk.mp4", "videos/b.mp4"),  # line 4
        row("videos/one.mp4", "videos/b.mp4"),  # line 5
        row("videos/a.mp4", "videos/b.mp4", fps_A=24, num_frames_B=99),  # line 6
        row("videos/a.mp4", "videos/b.mp4", fps_A=24, num_frames_B=99),  # line 7: duplicate of 6
    ]
    csv_path = make_csv(rows)
    report = validate_video_pairs(csv_path, DIMS, backend=resolve_backend("pyav"))
    text = "\n".join(str(p) for p in report.problems)
    assert f"error: {csv_path}:2 [path_B]: file not found" in text
    assert f"error: {csv_path}:3 [path_A]: file is empty (0 bytes)" in text
    assert f"error: {csv_path}:4 [path_A]: unreadable by pyav" in text
    assert f"error: {csv_path}:5 [path_A]: {tmp_path}/videos/one.mp4: a video needs at least 2 frames" in text
    assert (
        f"warning: {csv_path}:6 [fps_A/num_frames_A]: {tmp_path}/videos/a.mp4: declared fps 24 but the file has 8"
        in text
    )
    assert (
        f"warning: {csv_path}:6 [fps_B/num_frames_B]: {tmp_path}/videos/b.mp4: declared 99 frames but the file has 16"
        in text
    )
    assert f"warning: {csv_path}:7: duplicate of line 6 (same path_A, path_B, prompt)" in text
    assert report.failed()
    assert report.summary["problems"] == {
        "error:bad_video": 4,
        "warning:declared_mismatch": 4,
        "warning:duplicate_row": 1,
    }


def test_warnings_fail_only_when_strict(make_csv, good_videos):
    csv_path = make_csv([row("videos/a.mp4", "videos/b.mp4", num_frames_A=17)])
    report = validate_video_pairs(csv_path, DIMS, backend=resolve_backend("decord"))
    assert [p.kind for p in report.problems] == ["declared_mismatch"]
    assert not report.failed()
    assert report.failed(strict=True)


def test_run_validation_raises_before_training(make_csv, good_videos, tmp_path):
    train = make_csv([row("videos/a.mp4", "videos/b.mp4", VQ="maybe")], name="train.csv")
    test = make_csv([row("videos/a.mp4", "videos/gone.mp4")], name="test.csv")
    cfg = parse_config(
        values={
            "output_dir": str(tmp_path / "out"),
            "meta_data": str(train),
            "meta_data_test": str(test),
            "video_backend": "pyav",
        }
    )
    with pytest.raises(DataValidationError) as err:
        validate_run_data(cfg)
    assert [(p.file, p.line, p.field) for p in err.value.problems] == [
        (str(train), 2, "VQ"),
        (str(test), 2, "path_B"),
    ]


@pytest.mark.slow
def test_cli_exit_status_and_messages(make_csv, good_videos, tmp_path):
    bad = make_csv([row("videos/a.mp4", "videos/nope.mp4", MQ="?")], name="bad.csv")
    result = subprocess.run(
        [sys.executable, "-m", "vlmrm.data.validate", "--file", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"{bad}:2 [MQ]: unknown label '?'" in result.stderr
    assert f"{bad}:2 [path_B]: file not found" in result.stderr
    good = make_csv([row("videos/a.mp4", "videos/b.mp4")], name="good.csv")
    result = subprocess.run(
        [sys.executable, "-m", "vlmrm.data.validate", "--file", str(good), "--eval_dim", "VQ"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["labels"] == {"VQ": {"A": 1, "B": 0, "same": 0, "missing": 0}}
