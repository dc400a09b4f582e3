"""GRM dataset sources on small real fixture files: PNGs, a JSON array, a parquet, a CSV, a JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from vlmrm.core.problems import DataValidationError
from vlmrm.grm.sources import (
    SOURCES,
    SourceCounts,
    SourceOptions,
    load_sources,
    parse_data_path,
    rapidata_video_root,
)

IMAGE_SIZE = 8
THRESHOLD = 0.5


def write_png(path: Path, level: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (level, level, level)).save(path)
    return path


def write_json(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path


# ---- source:path strings ----


def test_data_path_splits_on_first_colon_and_commas():
    entries = parse_data_path("hpdv3:/d/a:b.json, rapidata-t2v:x/y.parquet")
    assert entries == [("hpdv3", Path("/d/a:b.json")), ("rapidata-t2v", Path("x/y.parquet"))]


@pytest.mark.parametrize("spec", ["data.json", "hpdv4:data.json", "hpdv3:a.json,b.json", "hpdv3:"])
def test_bad_data_path_lists_valid_sources(spec):
    with pytest.raises(ValueError, match="valid sources") as err:
        parse_data_path(spec)
    assert all(f"{source}:PATH" in str(err.value) for source in SOURCES)


def test_same_file_twice_is_an_error():
    with pytest.raises(ValueError, match="twice"):
        parse_data_path("hpdv3:a.json,hpdv3:a.json")


# ---- hpdv3 ----


@pytest.fixture
def hpdv3_file(tmp_path):
    """Six records: kept (confidence 0.9), kept (null confidence), below threshold, a missing image,
    an invalid record (no path2), kept (absolute paths)."""
    root = tmp_path / "hpd"
    for name in ("a1", "a2", "b1", "b2", "c1", "c2", "d1"):
        write_png(root / "images" / f"{name}.png")
    elsewhere = write_png(tmp_path / "elsewhere" / "e1.png"), write_png(tmp_path / "elsewhere" / "e2.png")
    base = {"model1": "m-good", "model2": "m-bad", "choice_dist": [3, 1]}
    records = [
        {**base, "prompt": "a cat", "path1": "images/a1.png", "path2": "images/a2.png", "confidence": 0.9},
        {**base, "prompt": "a dog", "path1": "images/b1.png", "path2": "images/b2.png", "confidence": None},
        {**base, "prompt": "a cow", "path1": "images/c1.png", "path2": "images/c2.png", "confidence": 0.2},
        {**base, "prompt": "a hen", "path1": "images/d1.png", "path2": "images/gone.png"},
        {**base, "prompt": "an owl", "path1": "images/a1.png"},
        {**base, "prompt": "a fox", "path1": str(elsewhere[0]), "path2": str(elsewhere[1])},
    ]
    return write_json(root / "train.json", records)


def test_hpdv3_counts_threshold_missing_and_invalid(hpdv3_file):
    load = load_sources(f"hpdv3:{hpdv3_file}", SourceOptions(confidence_threshold=THRESHOLD))
    assert [s.prompt for s in load.samples] == ["a cat", "a dog", "a fox"]
    assert load.counts == SourceCounts(loaded=3, ties=0, invalid=1, below_confidence=1, missing_files=1)
    first = load.samples[0]
    assert first.items == (hpdv3_file.parent / "images/a1.png", hpdv3_file.parent / "images/a2.png")
    assert first.ground_truth == 1 and first.media == "image" and first.source == "hpdv3"
    assert first.sample_id == f"hpdv3:{hpdv3_file}#0"
    assert first.extra == {"model1": "m-good", "model2": "m-bad", "choice_dist": [3, 1], "confidence": 0.9}
    assert load.samples[1].extra["confidence"] is None  # null confidence kept under a threshold
    assert load.samples[2].items[0].is_absolute() and load.samples[2].items[0].parent.name == "elsewhere"
    messages = [str(p) for p in load.problems]
    assert any("[path2]" in m and "record 3" in m and "gone.png" in m for m in messages), messages
    assert any("[path2]" in m and "record 4" in m and "non-empty string" in m for m in messages), messages


def test_hpdv3_without_threshold_keeps_low_confidence(hpdv3_file):
    load = load_sources(f"hpdv3:{hpdv3_file}")
    assert [s.prompt for s in load.samples] == ["a cat", "a dog", "a cow", "a fox"]
    assert load.counts.below_confidence == 0


def test_hpdv3_data_root_resolves_relative_paths(tmp_path):
    write_png(tmp_path / "media" / "x1.png"), write_png(tmp_path / "media" / "x2.png")
    data = write_json(tmp_path / "meta" / "d.json", [{"prompt": "p", "path1": "x1.png", "path2": "x2.png"}])
    assert load_sources(f"hpdv3:{data}").counts.missing_files == 1
    load = load_sources(f"hpdv3:{data}", SourceOptions(data_root=tmp_path / "media"))
    assert load.samples[0].items == (tmp_path / "media" / "x1.png", tmp_path / "media" / "x2.png")


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "JSON file not found"), ("{not json", "invalid JSON"), ('{"prompt": "x"}', "JSON array")],
)
def test_hpdv3_unreadable_file_raises_naming_it(tmp_path, content, match):
    path = tmp_path / "d.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataValidationError, match=match) as err:
        load_sources(f"hpdv3:{path}")
    assert str(path) in str(err.value)


def test_hpdv3_bad_confidence_is_invalid(tmp_path):
    write_png(tmp_path / "a.png"), write_png(tmp_path / "b.png")
    record = {"prompt": "p", "path1": "a.png", "path2": "b.png", "confidence": "high"}
    load = load_sources(f"hpdv3:{write_json(tmp_path / 'd.json', [record])}")
    assert load.counts.invalid == 1 and load.problems[0].field == "confidence"


# ---- rapidata-t2v ----


def rapidata_row(name: str, first: tuple, second: tuple, prompt: str = "a wave") -> dict:
    row = {"prompt": prompt, "file_name1": f"{name}_1.mp4", "file_name2": f"{name}_2.mp4"}
    for side, scores in ((1, first), (2, second)):
        for dim, value in zip(("Alignment", "Coherence", "Preference"), scores):
            row[f"weighted_results{side}_{dim}"] = value
    return row


@pytest.fixture
def rapidata_dir(tmp_path, make_video):
    """``ds/data/train.parquet`` with ``ds/videos/``: first better, second better, a float tie
    (0.1 + 0.2 vs 0.3), a null score (counts 0), a missing video."""
    rows = [
        rapidata_row("r0", (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)),
        rapidata_row("r1", (0.1, 0.1, 0.1), (0.3, 0.4, 0.5)),
        rapidata_row("r2", (0.1, 0.2, 0.0), (0.3, 0.0, 0.0)),
        rapidata_row("r3", (0.4, None, 0.4), (0.3, 0.3, 0.3)),
        rapidata_row("r4", (0.9, 0.9, 0.9), (0.1, 0.1, 0.1)),
    ]
    for row in rows[:4]:
        for column in ("file_name1", "file_name2"):
            make_video(f"ds/videos/{row[column]}", num_frames=4)
    make_video("ds/videos/r4_1.mp4", num_frames=4)
    parquet = tmp_path / "ds" / "data" / "train.parquet"
    parquet.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(parquet)
    return parquet


def test_rapidata_ground_truth_from_score_sums(rapidata_dir):
    load = load_sources(f"rapidata-t2v:{rapidata_dir}")
    assert [s.ground_truth for s in load.samples] == [1, 2, "tie", 2]
    assert load.counts == SourceCounts(loaded=4, ties=1, invalid=0, below_confidence=0, missing_files=1)
    first = load.samples[0]
    videos = rapidata_dir.parent.parent / "videos"
    assert first.items == (videos / "r0_1.mp4", videos / "r0_2.mp4") and first.media == "video"
    assert first.extra["human_totals"] == pytest.approx([1.5, 0.6])
    assert load.samples[3].extra["human_scores"][0]["Coherence"] == 0.0  # null counts 0: 0.8 < 0.9
    assert any("[file_name2]" in str(p) and "row 4" in str(p) for p in load.problems)


def test_rapidata_missing_score_column_counts_zero(tmp_path):
    (tmp_path / "videos").mkdir()
    for name in ("m_1.mp4", "m_2.mp4"):
        (tmp_path / "videos" / name).write_bytes(b"\0")
    row = rapidata_row("m", (0.3, 0.3, 0.3), (0.5, 0.5, 0.0))
    del row["weighted_results2_Preference"]  # side 2 = 1.0 > 0.9 only if missing reads 0, not NaN
    parquet = tmp_path / "t.parquet"
    pd.DataFrame([row]).to_parquet(parquet)
    assert load_sources(f"rapidata-t2v:{parquet}").samples[0].ground_truth == 2


def test_rapidata_video_root_rule(tmp_path):
    parquet = tmp_path / "ds" / "data" / "x.parquet"
    with pytest.raises(DataValidationError, match="no videos folder") as err:
        rapidata_video_root(parquet)
    assert str(tmp_path / "ds" / "videos") in str(err.value)
    assert str(tmp_path / "ds" / "data" / "videos") in str(err.value)
    (tmp_path / "ds" / "data" / "videos").mkdir(parents=True)
    assert rapidata_video_root(parquet) == tmp_path / "ds" / "data"  # only the parent has one
    (tmp_path / "ds" / "videos").mkdir()
    assert rapidata_video_root(parquet) == tmp_path / "ds"  # both: the parent's parent wins
    (tmp_path / "mine" / "videos").mkdir(parents=True)
    assert rapidata_video_root(parquet, tmp_path / "mine") == tmp_path / "mine"
    with pytest.raises(DataValidationError, match="no videos folder"):
        rapidata_video_root(parquet, tmp_path / "nowhere")


def test_rapidata_missing_column_names_it(tmp_path):
    parquet = tmp_path / "t.parquet"
    pd.DataFrame([{"prompt": "p", "file_name1": "a.mp4"}]).to_parquet(parquet)
    with pytest.raises(DataValidationError, match=r"\[file_name2\]: missing column"):
        load_sources(f"rapidata-t2v:{parquet}")


# ---- our own CSV video pairs and JSONL image pairs ----

CSV_WITH_OVERALL = ["path_A", "path_B", "prompt", "VQ", "MQ", "TA", "Overall"]


@pytest.fixture
def video_csv(make_csv, make_video):
    for name in ("v1", "v2", "v3", "v4"):
        make_video(f"{name}.mp4", num_frames=4)
    rows = [
        {
            "path_A": "v1.mp4",
            "path_B": "v2.mp4",
            "prompt": "p0",
            "VQ": "A",
            "MQ": "B",
            "TA": "A",
            "Overall": "B",
        },
        {
            "path_A": "v3.mp4",
            "path_B": "v4.mp4",
            "prompt": "p1",
            "VQ": "same",
            "MQ": "A",
            "TA": "B",
            "Overall": "A",
        },
        {
            "path_A": "v1.mp4",
            "path_B": "gone.mp4",
            "prompt": "p2",
            "VQ": "A",
            "MQ": "A",
            "TA": "A",
            "Overall": "A",
        },
        {
            "path_A": "v1.mp4",
            "path_B": "v4.mp4",
            "prompt": "p3",
            "VQ": "C",
            "MQ": "A",
            "TA": "A",
            "Overall": "?",
        },
    ]
    return make_csv(rows, header=CSV_WITH_OVERALL)


@pytest.mark.parametrize(
    ("dimension", "expected"), [("VQ", [1, "tie"]), ("Overall", [2, 1]), ("MQ", [2, 1, 1])]
)
def test_video_pairs_dimension_gives_ground_truth(video_csv, dimension, expected):
    load = load_sources(f"video-pairs:{video_csv}", SourceOptions(dimension=dimension))
    assert [s.ground_truth for s in load.samples] == expected
    assert load.counts.missing_files == 1
    assert load.counts.invalid == (0 if dimension == "MQ" else 1)  # line 5: VQ "C", Overall "?", MQ valid
    assert load.samples[0].items == (video_csv.parent / "v1.mp4", video_csv.parent / "v2.mp4")
    assert load.samples[0].sample_id == f"video-pairs:{video_csv}#2"
    assert load.counts.ties == expected.count("tie")


def test_video_pairs_overall_needs_its_column(make_csv, make_video):
    make_video("v1.mp4", num_frames=4)
    csv = make_csv([{"path_A": "v1.mp4", "path_B": "v1.mp4", "prompt": "p", "VQ": "A", "MQ": "A", "TA": "A"}])
    with pytest.raises(DataValidationError, match=r"\[Overall\]: missing column"):
        load_sources(f"video-pairs:{csv}")


def test_image_pairs_use_the_label_and_reject_text_layouts(tmp_path):
    for name in ("a", "b", "c"):
        write_png(tmp_path / f"{name}.png")
    lines = [
        {"prompt": "red", "image_A": "a.png", "image_B": "b.png", "label": "B"},
        {"prompt": "blue", "images": ["b.png", "c.png"], "label": "same"},
        {"prompt": "q", "chosen": "yes", "rejected": "no", "images": ["a.png"]},
        {"prompt": "green", "image_A": "a.png", "image_B": "gone.png", "label": "A"},
        {"prompt": "teal", "image_A": "a.png", "image_B": "b.png", "label": "maybe"},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    load = load_sources(f"image-pairs:{path}")
    assert [(s.prompt, s.ground_truth) for s in load.samples] == [("red", 2), ("blue", "tie")]
    assert load.samples[0].items == (tmp_path / "a.png", tmp_path / "b.png")
    assert load.counts == SourceCounts(loaded=2, ties=1, invalid=2, below_confidence=0, missing_files=1)
    assert any(p.line == 3 and "chosen_rejected" in p.message for p in load.problems)


def test_several_sources_add_up(hpdv3_file, tmp_path):
    write_png(tmp_path / "a.png"), write_png(tmp_path / "b.png")
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"prompt": "x", "image_A": "a.png", "image_B": "b.png", "label": "A"}) + "\n")
    load = load_sources(f"hpdv3:{hpdv3_file},image-pairs:{jsonl}")
    assert load.counts.loaded == len(load.samples) == 5
    assert load.counts.missing_files == 1 and load.counts.invalid == 1
    assert list(load.per_source) == [f"hpdv3:{hpdv3_file}", f"image-pairs:{jsonl}"]
    assert load.per_source[f"image-pairs:{jsonl}"].loaded == 1
    assert len({s.sample_id for s in load.samples}) == 5
