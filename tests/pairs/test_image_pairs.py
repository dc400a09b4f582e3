"""JSONL image-pair parsing: three schemas, base64 and relative images, every bad line named."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from vlmrm.pairs.image_pairs import check_images, parse_image_pair_jsonl, ranking_label


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    for name, colour in (("red.png", (220, 40, 40)), ("blue.png", (40, 80, 220))):
        Image.fromarray(np.full((32, 32, 3), colour, np.uint8)).save(folder / name)
    (folder / "corrupt.png").write_bytes(b"not a png")
    return folder


def write_jsonl(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def inline_png() -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_three_schemas_parse_to_pairs(images, tmp_path):
    path = write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"prompt": "What colour?", "chosen": "red", "rejected": "blue", "images": ["img/red.png"]},
            {
                "id": "s1",
                "query": "What colour?",
                "image": "img/blue.png",
                "response": ["red", "blue"],
                "human_ranking": [1, 0],
            },
            {
                "id": "s2",
                "query": "Q",
                "image": "img/blue.png",
                "response": ["a", "b"],
                "human_ranking": [0, 0],
            },
            {"prompt": "a red square", "image_A": "img/red.png", "image_B": "img/blue.png", "label": "A"},
            {"prompt": "a blue square", "images": ["img/red.png", inline_png()], "label": "same"},
        ],
    )
    table = parse_image_pair_jsonl(path)
    assert table.problems == [] and table.total_lines == 5
    schemas = [p.schema for p in table.pairs]
    assert schemas == ["chosen_rejected", "ranking", "ranking", "image_preference", "image_preference"]
    assert [p.label for p in table.pairs] == [1, -1, 0, 1, 0]
    first = table.pairs[0]
    assert (first.side_a.response, first.side_b.response) == ("red", "blue")
    assert first.side_a.images[0].path == tmp_path / "img" / "red.png"
    assert table.pairs[4].side_b.images[0].open().size == (8, 8)
    assert table.pairs[1].sample_id == "s1" and [p.line for p in table.pairs] == [1, 2, 3, 4, 5]
    assert check_images(table) == []


def test_every_bad_line_type_is_named(images, tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            '{"prompt": "x", "chosen": "a"',  # 1 invalid JSON
            {"prompt": "x", "chosen": "a", "images": ["img/red.png"]},  # 2 missing rejected
            {"query": "q", "image": "img/red.png", "response": ["a", "b"], "human_ranking": [0, 2]},  # 3
            {"query": "q", "image": "img/nope.png", "response": ["a", "b"], "human_ranking": [0, 1]},  # 4
            {"query": "q", "image": "img/corrupt.png", "response": ["a", "b"], "human_ranking": [1, 0]},  # 5
            {"prompt": "p", "image_A": "img/red.png", "image_B": "img/blue.png", "label": "left"},  # 6
            {"foo": 1},  # 7
            [1, 2],  # 8
            {"prompt": "p", "images": ["img/red.png"], "label": "A"},  # 9 one image for two sides
        ],
    )
    table = parse_image_pair_jsonl(path)
    problems = [str(p) for p in table.problems + check_images(table)]
    expected = [
        f"{path}:1: invalid JSON",
        f"{path}:2 [rejected]: missing field",
        f"{path}:3 [human_ranking]: ranking not a permutation",
        f"{path}:6 [label]: must be one of A, B, same, got 'left'",
        f"{path}:7: unknown record layout",
        f"{path}:8: a line must be a JSON object",
        f"{path}:9 [images]: must hold exactly 2 images, got 1",
        f"{path}:4 [image]: image file not found: {tmp_path / 'img' / 'nope.png'}",
        f"{path}:5 [image]: cannot decode image",
    ]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert len(problems) == len(expected)


@pytest.mark.parametrize(
    "ranking, label",
    [([0, 1], 1), ([1, 0], -1), ([0, 0], 0), ([1, 1], None), ([0, 2], None), ([0], None), ([0, True], None)],
)
def test_ranking_labels(ranking, label):
    if label is None:
        with pytest.raises(ValueError, match="not a permutation"):
            ranking_label(ranking, 2)
    else:
        assert ranking_label(ranking, 2) == label


def test_image_dir_and_missing_file(images, tmp_path):
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    path = write_jsonl(
        elsewhere / "d.jsonl", [{"prompt": "p", "image_A": "red.png", "image_B": "blue.png", "label": "B"}]
    )
    table = parse_image_pair_jsonl(path, image_dir=images)
    assert table.pairs[0].side_a.images[0].path == images / "red.png" and check_images(table) == []
    missing = parse_image_pair_jsonl(tmp_path / "none.jsonl")
    assert "JSONL file not found" in str(missing.problems[0])


def test_irrelevant_pairs_follow_the_rule_and_the_seed(tmp_path):
    from vlmrm.pairs.image_pairs import ImagePairDataset, image_description, matched_text
    from vlmrm.testing.synthetic_images import SyntheticImageConfig, generate_image_pairs

    data = generate_image_pairs(SyntheticImageConfig(tmp_path / "img", num_train=24, num_test=0))
    table = parse_image_pair_jsonl(data / "train.jsonl")
    dataset = ImagePairDataset(table, irrelevant_pairs=2, seed=7)
    for index in range(len(dataset)):
        items = dataset[index]["irrelevant"]
        assert len(items) == 2
        pair = table.pairs[index]
        prompt, response = matched_text(pair)
        for item in items:
            assert (item["prompt"], item["response"]) == (prompt, response)
            unrelated = [p for p in table.pairs if image_description(p) != image_description(pair)]
            assert any(
                np.array_equal(np.asarray(item["unrelated"][0]), np.asarray(side.images[0].open()))
                for p in unrelated
                for side in (p.side_a, p.side_b)
            )
    again = ImagePairDataset(table, irrelevant_pairs=2, seed=7)
    same = [np.asarray(i["unrelated"][0]) for i in again[3]["irrelevant"]]
    assert all(
        np.array_equal(a, np.asarray(b["unrelated"][0])) for a, b in zip(same, dataset[3]["irrelevant"])
    )
    # a new draw each epoch (deterministic per seed and epoch)
    draws = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        draws |= {np.asarray(i["unrelated"][0]).tobytes() for i in dataset[3]["irrelevant"]}
    assert len(draws) > 2


@pytest.mark.slow
def test_validation_cli_reports_jsonl_lines(images, tmp_path):
    import subprocess
    import sys

    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"prompt": "p", "image_A": "img/red.png", "image_B": "img/blue.png", "label": "A"},
            {"prompt": "p", "image_A": "img/red.png", "image_B": "img/corrupt.png", "label": "B"},
        ],
    )
    command = [sys.executable, "-m", "vlmrm.data.validate", "--file", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert f"{path}:2 [image]: cannot decode image" in result.stderr
    summary = json.loads(result.stdout.splitlines()[0])
    assert (summary["lines"], summary["pairs"], summary["bad_lines"]) == (2, 2, 1)
