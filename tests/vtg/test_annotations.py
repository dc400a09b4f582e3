"""VTG JSONL: every bad line named as file:line [field]: message; video checks; the Dataset; the CLI."""

import json
from dataclasses import replace

import pytest
import torch

from vlmrm.cli.validate import main as validate_main
from vlmrm.core.problems import DataValidationError
from vlmrm.media.video import BACKENDS, VideoDecodeError
from vlmrm.vtg import annotations as vtg_data
from vlmrm.vtg.annotations import (
    TIMESTAMP_SLACK_S,
    VTGDataset,
    load_vtg_jsonl,
    parse_vtg_jsonl,
    vtg_media_problems,
)
from vlmrm.vtg.clips import DURATION_TOLERANCE_S
from vlmrm.vtg.data_config import ResolutionSection, VideoSection
from vlmrm.vtg.validate import validate_vtg

PYAV = BACKENDS["pyav"]
GOOD = {"video": "videos/a.mp4", "duration": 3.0, "timestamp": [0.5, 2.0], "sentence": "a red square"}
"""A valid line for the 3 s video ``videos/a.mp4`` (24 frames at 8 fps) written by the fixture."""
SMALL = ResolutionSection(height=56, width=56)


def write_jsonl(path, lines) -> str:
    """Dicts are written as JSON, strings verbatim (to write broken lines)."""
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


@pytest.fixture
def video_a(make_video):
    return make_video("videos/a.mp4", num_frames=24, fps=8)


def test_good_line_parses_with_metadata_and_paths(tmp_path):
    line = {
        **GOOD,
        "qid": 17,
        "video_start": 1.0,
        "video_end": 4.0,
        "difficulty": 0.25,
        "pred": [0, 1.5],
        "source": "synthetic",
        "tags": ["x"],
    }
    table = parse_vtg_jsonl(write_jsonl(tmp_path / "train.jsonl", ["", line]))
    assert table.problems == [] and table.total_lines == 1
    (sample,) = table.samples
    assert sample.video == tmp_path / "videos" / "a.mp4"  # relative to the JSONL's folder
    assert (sample.duration, sample.timestamp, sample.sentence) == (3.0, (0.5, 2.0), "a red square")
    assert (sample.video_start, sample.video_end, sample.difficulty, sample.pred) == (
        1.0,
        4.0,
        0.25,
        (0.0, 1.5),
    )
    assert sample.qid == "17"
    assert sample.metadata == {"source": "synthetic", "tags": ["x"]}
    assert sample.line == 2  # the blank first line still counts


def test_video_dir_and_reference_style_paths(tmp_path):
    lines = [GOOD, {**GOOD, "video": "./data/videos/b.mp4"}, {**GOOD, "video": "/abs/c.mp4"}]
    table = parse_vtg_jsonl(write_jsonl(tmp_path / "t.jsonl", lines), video_dir="data/videos")
    assert [str(s.video) for s in table.samples] == [
        "data/videos/videos/a.mp4",
        "data/videos/b.mp4",  # already spelled from video_dir (as TimeRFT-style files write it)
        "/abs/c.mp4",
    ]


BAD_LINES = [
    ("{bad", "invalid JSON: Expecting property name enclosed in double quotes (column 2)", None),
    ("[1, 2]", "a line must be a JSON object, got array [1, 2]", None),
    ({k: v for k, v in GOOD.items() if k != "video"}, "missing required field", "video"),
    ({k: v for k, v in GOOD.items() if k != "sentence"}, "missing required field", "sentence"),
    ({k: v for k, v in GOOD.items() if k != "duration"}, "missing required field", "duration"),
    ({k: v for k, v in GOOD.items() if k != "timestamp"}, "missing required field", "timestamp"),
    ({**GOOD, "video": ""}, "must not be empty", "video"),
    ({**GOOD, "video": ["a.mp4"]}, 'must be a string, got array ["a.mp4"]', "video"),
    ({**GOOD, "sentence": "  "}, "must not be empty", "sentence"),
    ({**GOOD, "sentence": 5}, "must be a string, got number 5", "sentence"),
    ({**GOOD, "duration": "3.0"}, 'must be a finite number, got string "3.0"', "duration"),
    ({**GOOD, "duration": None}, "must be a number, got null", "duration"),
    ({**GOOD, "duration": True}, "must be a finite number, got boolean true", "duration"),
    ({**GOOD, "duration": float("nan")}, "must be a finite number, got number NaN", "duration"),
    ({**GOOD, "duration": 0}, "must be > 0 seconds, got 0", "duration"),
    ({**GOOD, "timestamp": [1]}, "must be [start, end] (2 numbers), got array [1]", "timestamp"),
    ({**GOOD, "timestamp": None}, "must be [start, end], got null", "timestamp"),
    ({**GOOD, "timestamp": ["0", 1]}, 'must be [start, end] (2 numbers), got array ["0", 1]', "timestamp"),
    ({**GOOD, "timestamp": [2.5, 1]}, "start 2.5 >= end 1", "timestamp"),
    ({**GOOD, "timestamp": [1, 1]}, "start 1 >= end 1", "timestamp"),
    ({**GOOD, "timestamp": [2, 3.5]}, "[2, 3.5] outside the clip [0, 3] s", "timestamp"),
    ({**GOOD, "timestamp": [-0.5, 1]}, "[-0.5, 1] outside the clip [0, 3] s", "timestamp"),
    ({**GOOD, "video_start": -1}, "must be >= 0 seconds, got -1", "video_start"),
    ({**GOOD, "video_end": "4"}, 'must be a finite number, got string "4"', "video_end"),
    ({**GOOD, "video_start": 5, "video_end": 5}, "video_start 5 >= video_end 5", "video_start/video_end"),
    ({**GOOD, "qid": [1]}, "must be a string, got array [1]", "qid"),
    ({**GOOD, "difficulty": "hard"}, 'must be a finite number, got string "hard"', "difficulty"),
]


@pytest.mark.parametrize("line, message, field", BAD_LINES)
def test_each_bad_line_is_named(tmp_path, line, message, field):
    path = write_jsonl(tmp_path / "t.jsonl", [GOOD, line, GOOD])
    table = parse_vtg_jsonl(path)
    column = f" [{field}]" if field else ""
    assert [str(p) for p in table.problems] == [f"error: {path}:2{column}: {message}"]
    assert [s.line for s in table.samples] == [1, 3]  # the good lines around it still parse


def test_a_malformed_pred_is_a_warning_and_keeps_its_sample(tmp_path):
    """``pred`` is a model output to score, not training input: evaluation counts it as unparseable."""
    path = write_jsonl(tmp_path / "t.jsonl", [GOOD, {**GOOD, "pred": "0-3"}])
    table = parse_vtg_jsonl(path)
    message = 'must be [start, end] (2 numbers), got string "0-3"'
    assert [str(p) for p in table.problems] == [f"warning: {path}:2 [pred]: {message}"]
    assert [(s.line, s.pred) for s in table.samples] == [(1, None), (2, None)]


def test_every_problem_of_one_line_is_reported(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"video": 3, "duration": -1, "timestamp": [2, 1]}])
    assert [(p.field, p.message) for p in parse_vtg_jsonl(path).problems] == [
        ("video", "must be a string, got number 3"),
        ("sentence", "missing required field"),
        ("duration", "must be > 0 seconds, got -1"),
        ("timestamp", "start 2 >= end 1"),
    ]


def test_timestamp_slack_is_rounding_only(tmp_path):
    inside = {**GOOD, "timestamp": [0, 3.0 + TIMESTAMP_SLACK_S / 2]}
    outside = {**GOOD, "timestamp": [0, 3.0 + 2 * TIMESTAMP_SLACK_S]}
    table = parse_vtg_jsonl(write_jsonl(tmp_path / "t.jsonl", [inside, outside]))
    assert [(p.line, p.kind) for p in table.problems] == [(2, "timestamp_out_of_range")]


def test_duplicate_qid_warns_and_missing_or_empty_file_errs(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{**GOOD, "qid": "q"}, {**GOOD, "qid": "q"}])
    table = parse_vtg_jsonl(path)
    assert [str(p) for p in table.problems] == [
        f"warning: {path}:2 [qid]: duplicate qid 'q' (first on line 1)"
    ]
    assert len(table.samples) == 2
    assert len(load_vtg_jsonl(path)) == 2
    with pytest.raises(DataValidationError, match="duplicate qid"):
        load_vtg_jsonl(path, strict=True)
    missing = parse_vtg_jsonl(tmp_path / "nope.jsonl")
    assert [str(p) for p in missing.problems] == [f"error: {tmp_path / 'nope.jsonl'}: JSONL file not found"]
    empty = write_jsonl(tmp_path / "empty.jsonl", [""])
    assert [str(p) for p in parse_vtg_jsonl(empty).problems] == [
        f"error: {empty}: no samples: the file has no lines"
    ]


def media_messages(tmp_path, lines, backend=PYAV) -> list[str]:
    table = parse_vtg_jsonl(write_jsonl(tmp_path / "t.jsonl", lines))
    assert table.problems == []
    return [str(p) for p in vtg_media_problems(table, backend)]


def test_video_file_problems(tmp_path, video_a):
    (tmp_path / "videos" / "empty.mp4").write_bytes(b"")
    (tmp_path / "videos" / "junk.mp4").write_bytes(b"garbage" * 50)
    lines = [GOOD] + [{**GOOD, "video": f"videos/{n}.mp4"} for n in ("missing", "empty", "junk")]
    found = media_messages(tmp_path, lines)
    path = tmp_path / "t.jsonl"
    videos = tmp_path / "videos"
    assert found[:2] == [
        f"error: {path}:2 [video]: file not found: {videos / 'missing.mp4'}",
        f"error: {path}:3 [video]: file is empty (0 bytes): {videos / 'empty.mp4'}",
    ]
    assert found[2].startswith(f"error: {path}:4 [video]: unreadable by pyav: ")
    assert len(found) == 3


def test_trim_window_problems(tmp_path, video_a):
    # videos/a.mp4: 24 frames at 8 fps = 3 s
    lines = [
        {**GOOD, "duration": 1.0, "timestamp": [0, 1], "video_start": 1.0, "video_end": 2.0},  # fits
        {**GOOD, "duration": 1.0, "timestamp": [0, 1], "video_start": 1.0, "video_end": 10.0},
        {**GOOD, "duration": 1.0, "timestamp": [0, 1], "video_start": 5.0},
        {**GOOD, "duration": 0.1, "timestamp": [0, 0.1], "video_start": 1.0, "video_end": 1.1},
    ]
    path, video = tmp_path / "t.jsonl", video_a
    assert media_messages(tmp_path, lines) == [
        f"error: {path}:2 [video_end]: trim window [1, 10] s ends after the file's end (3 s): {video}",
        f"error: {path}:3 [video_start]: video_start 5 s is at or after the file's end (3 s): {video}",
        # frames 8 (1.0 s) .. ceil(1.1 * 8) - 1 = 8: one frame
        f"error: {path}:4 [video_start/video_end]: the clip [1, 1.1] s holds 1 frame(s); sampling needs 2: {video}",
    ]


def mismatch(path, line, declared, lasts, window, video) -> str:
    """The duration-mismatch problem as printed."""
    return (
        f"error: {path}:{line} [duration]: declared {declared:g} s but the clip lasts {lasts:g} s "
        f"([{window[0]:g}, {window[1]:g}] s of {video}; tolerance {DURATION_TOLERANCE_S:g} s)"
    )


def test_duration_mismatch_tolerance(tmp_path, video_a):
    lines = [
        {**GOOD, "duration": 3.0 + DURATION_TOLERANCE_S - 0.1, "timestamp": [0, 1]},  # within tolerance
        {**GOOD, "duration": 3.0 + DURATION_TOLERANCE_S + 0.1, "timestamp": [0, 1]},
        {**GOOD, "duration": 2.0, "timestamp": [0, 1], "video_start": 0.5, "video_end": 2.5},  # window: 2 s
        {**GOOD, "duration": 3.0, "timestamp": [0, 1], "video_start": 0.5, "video_end": 2.5},
    ]
    path, declared = tmp_path / "t.jsonl", 3.0 + DURATION_TOLERANCE_S + 0.1
    assert media_messages(tmp_path, lines) == [
        mismatch(path, 2, declared, 3, (0, 3), video_a),
        mismatch(path, 4, 3, 2, (0.5, 2.5), video_a),
    ]


def test_precut_file_window_is_provenance(tmp_path, video_a):
    # TimeRFT-style lines: the file is the cut, video_start/video_end locate it in its source
    precut = {**GOOD, "video_start": 404.2, "video_end": 407.2}
    assert media_messages(tmp_path, [precut]) == []


def test_each_video_is_probed_once(tmp_path, video_a):
    calls = []

    def counting_info(path):
        calls.append(path)
        return PYAV.info(path)

    assert media_messages(tmp_path, [GOOD, GOOD, GOOD], replace(PYAV, info=counting_info)) == []
    assert calls == [str(video_a)]


def test_dataset_decodes_in_getitem(tmp_path, video_a, monkeypatch):
    samples = load_vtg_jsonl(
        write_jsonl(
            tmp_path / "t.jsonl", [{**GOOD, "qid": "q1", "difficulty": 0.5}, {**GOOD, "duration": 2.5}]
        )
    )
    calls = []
    real = vtg_data.load_vtg_clip
    monkeypatch.setattr(vtg_data, "load_vtg_clip", lambda *a, **k: calls.append(a[0].line) or real(*a, **k))
    dataset = VTGDataset(samples, VideoSection(max_frames=4, resolution=SMALL), PYAV)
    assert calls == [] and len(dataset) == 2
    assert dataset.durations == [3.0, 2.5]
    item = dataset[0]
    assert calls == [1]
    assert {k: v for k, v in item.items() if k != "clip"} == {
        "sentence": "a red square",
        "timestamp": (0.5, 2.0),
        "duration": 3.0,
        "qid": "q1",
        "difficulty": 0.5,
        "line": 1,
    }
    assert item["clip"].frames.shape == (4, 3, 56, 56)


def test_dataset_missing_video_fails_only_when_read(tmp_path):
    samples = load_vtg_jsonl(write_jsonl(tmp_path / "t.jsonl", [GOOD]))
    dataset = VTGDataset(samples, VideoSection(), PYAV)
    with pytest.raises(VideoDecodeError, match="file not found"):
        dataset[0]


def test_dataset_in_dataloader_worker_matches_main_process(tmp_path, video_a):
    samples = load_vtg_jsonl(write_jsonl(tmp_path / "t.jsonl", [GOOD, {**GOOD, "timestamp": [1, 2]}]))
    video = VideoSection(max_frames=4, sampling_strategy="random", resolution=SMALL)
    dataset = VTGDataset(samples, video, PYAV, seed=3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1)
    from_worker = [item["clip"] for item in loader]
    in_process = [dataset[i]["clip"] for i in range(2)]
    assert [c.decoded.indices for c in from_worker] == [c.decoded.indices for c in in_process]
    assert all(torch.equal(a.frames, b.frames) for a, b in zip(from_worker, in_process))
    dataset.set_epoch(1)
    assert [dataset[i]["clip"].decoded.indices for i in range(2)] != [c.decoded.indices for c in in_process]


@pytest.mark.slow
def test_validate_vtg_summary_and_cli(tmp_path, video_a, capsys):
    good = write_jsonl(
        tmp_path / "good.jsonl", [GOOD, {**GOOD, "timestamp": [0, 3], "video_start": 0, "video_end": 3}]
    )
    report = validate_vtg(good, backend=PYAV)
    assert report.problems == []
    # segment fraction = (end - start) / duration: 1.5 / 3 and 3 / 3
    assert report.summary == {
        "lines": 2,
        "samples": 2,
        "bad_lines": 0,
        "videos": 1,
        "trimmed": 1,
        "duration_s": {"min": 3.0, "mean": 3.0, "max": 3.0},
        "segment_fraction": {"min": 0.5, "mean": 0.75, "max": 1.0},
        "problems": {},
    }
    assert validate_main(["--task", "vtg", "--file", good, "--video_backend", "pyav"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 2

    bad = write_jsonl(
        tmp_path / "bad.jsonl", [{**GOOD, "video": "videos/gone.mp4"}, "{", {**GOOD, "duration": 9}]
    )
    assert validate_main(["--task", "vtg", "--file", bad, "--video_backend", "pyav"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[:3] == [
        f"error: {bad}:1 [video]: file not found: {tmp_path / 'videos' / 'gone.mp4'}",
        f"error: {bad}:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        mismatch(bad, 3, 9, 3, (0, 3), video_a),
    ]
    assert captured.err.splitlines()[-1] == "FAILED"
    summary = json.loads(captured.out)
    assert (summary["lines"], summary["samples"], summary["bad_lines"]) == (3, 2, 3)


@pytest.mark.slow
def test_cli_reads_both_annotation_files_of_a_data_yaml(tmp_path, video_a, capsys):
    (tmp_path / "ann").mkdir()
    write_jsonl(tmp_path / "ann" / "train.jsonl", [GOOD])
    write_jsonl(tmp_path / "ann" / "val.jsonl", [GOOD, GOOD])
    config = tmp_path / "data.yaml"
    config.write_text(
        f"dataset:\n  data_root: {tmp_path}\n  annotation_file: ann/train.jsonl\n  video_dir: {tmp_path}\n"
        "validation:\n  annotation_file: ann/val.jsonl\n"
    )
    assert validate_main(["--task", "vtg", "--config", str(config), "--video_backend", "pyav"]) == 0
    summaries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(s["file"], s["samples"]) for s in summaries] == [
        (str(tmp_path / "ann" / "train.jsonl"), 1),
        (str(tmp_path / "ann" / "val.jsonl"), 2),
    ]
