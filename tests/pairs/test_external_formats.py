"""TRL and LLaMA-Factory preference records read as they are: every variant, every bad record named."""

import json

import numpy as np
import pytest
from PIL import Image

from vlmrm.pairs.external_formats import extract_prompt, read_records
from vlmrm.pairs.image_pairs import ImagePairDataset, parse_image_pair_jsonl
from vlmrm.pairs.validate import validate_image_pairs

USER_WITH_IMAGE = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]


def assistant(text):
    return [{"role": "assistant", "content": text}]


@pytest.fixture
def images(tmp_path):
    for name, colour in (("red.png", (220, 40, 40)), ("blue.png", (40, 80, 220))):
        Image.fromarray(np.full((16, 16, 3), colour, np.uint8)).save(tmp_path / name)
    return tmp_path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def pair_texts(pair):
    return pair.prompt, pair.side_a.response, pair.side_b.response


def test_trl_explicit_implicit_and_conversational(images):
    path = write_jsonl(
        images / "trl.jsonl",
        [
            {"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "images": ["red.png"]},
            {"chosen": "The sky is blue.", "rejected": "The sky is green.", "images": ["red.png"]},
            {
                "prompt": USER_WITH_IMAGE,
                "chosen": assistant("red"),
                "rejected": assistant("blue"),
                "images": ["red.png"],
            },
            {
                "chosen": USER_WITH_IMAGE + assistant("red"),
                "rejected": USER_WITH_IMAGE + assistant("blue"),
                "images": ["red.png"],
            },
        ],
    )
    table = parse_image_pair_jsonl(path)
    assert table.problems == []
    assert [pair_texts(p) for p in table.pairs] == [
        ("The sky is", " blue.", " green."),
        ("The sky is", " blue.", " green."),  # TRL's extract_prompt: the space stays with the responses
        ("What colour?", "red", "blue"),
        ("What colour?", "red", "blue"),
    ]
    assert [p.schema for p in table.pairs] == ["chosen_rejected", "trl", "trl", "trl"]
    assert all(p.label == 1 and p.side_a.images == p.side_b.images for p in table.pairs)


def test_extract_prompt_follows_trl_on_text_and_messages():
    assert extract_prompt("ab c", "ab d") == ("ab", " c", " d")
    assert extract_prompt([1, 2, 3], [1, 2, 4]) == ([1, 2], [3], [4])


def test_llamafactory_sharegpt_json_array_with_dataset_info(images):
    records = [
        {
            "messages": [{"role": "user", "content": "<image>Which colour?"}],
            "better": {"role": "assistant", "content": "red"},
            "worse": {"role": "assistant", "content": "blue"},
            "pictures": ["red.png"],
        },
        {
            "messages": [{"role": "user", "content": "<image><image>Same?"}],
            "better": {"role": "assistant", "content": "no"},
            "worse": {"role": "assistant", "content": "yes"},
            "pictures": ["red.png", "blue.png"],
        },
    ]
    (images / "lf.json").write_text(json.dumps(records, indent=2))
    (images / "dataset_info.json").write_text(
        json.dumps(
            {
                "my_rm": {
                    "file_name": "lf.json",
                    "formatting": "sharegpt",
                    "ranking": True,
                    "columns": {
                        "messages": "messages",
                        "chosen": "better",
                        "rejected": "worse",
                        "images": "pictures",
                    },
                    "tags": {
                        "role_tag": "role",
                        "content_tag": "content",
                        "user_tag": "user",
                        "assistant_tag": "assistant",
                    },
                }
            }
        )
    )
    table = parse_image_pair_jsonl(images / "lf.json")
    assert table.problems == []
    assert [pair_texts(p) for p in table.pairs] == [("Which colour?", "red", "blue"), ("Same?", "no", "yes")]
    assert [len(p.side_a.images) for p in table.pairs] == [1, 2]
    starts = [i for i, line in enumerate((images / "lf.json").read_text().splitlines(), 1) if line == "  {"]
    assert [p.line for p in table.pairs] == starts and len(starts) == 2  # the line each record starts on


def test_llamafactory_defaults_sharegpt_and_alpaca_jsonl(images):
    path = write_jsonl(
        images / "lf.jsonl",
        [
            {
                "conversations": [{"from": "human", "value": "<image>Colour?"}],
                "chosen": {"from": "gpt", "value": "red"},
                "rejected": {"from": "gpt", "value": "blue"},
                "images": ["red.png"],
            },
            {
                "instruction": "Name the colour.",
                "input": "<image>",
                "chosen": "red",
                "rejected": "blue",
                "images": ["red.png"],
            },
        ],
    )
    table = parse_image_pair_jsonl(path)
    assert table.problems == []
    assert [p.schema for p in table.pairs] == ["llamafactory_sharegpt", "llamafactory_alpaca"]
    assert [pair_texts(p) for p in table.pairs] == [
        ("Colour?", "red", "blue"),
        ("Name the colour.", "red", "blue"),
    ]


def test_bad_records_are_named_by_line_and_index(images):
    good = {
        "conversations": [{"from": "human", "value": "<image>Colour?"}],
        "chosen": {"from": "gpt", "value": "red"},
        "rejected": {"from": "gpt", "value": "blue"},
        "images": ["red.png"],
    }
    two_turns = {**good, "conversations": good["conversations"] * 2}
    placeholders = {**good, "images": ["red.png", "blue.png"]}
    system = {**good, "system": "You judge colours."}
    (images / "bad.json").write_text(
        "[\n" + ",\n".join(json.dumps(r) for r in (good, two_turns, placeholders, system)) + "\n]\n"
    )
    report = validate_image_pairs(images / "bad.json")
    shown = [str(p) for p in report.problems]
    assert any(
        ":3 [conversations]: must hold exactly one user message" in s and "(record 1)" in s for s in shown
    )
    assert any(":4 [conversations]: 1 <image> placeholder(s) for 2 image(s) (record 2)" in s for s in shown)
    assert any(":5 [system]: a system prompt" in s and "(record 3)" in s for s in shown)
    assert report.summary["pairs"] == 1 and report.summary["bad_lines"] == 3


def test_broken_json_array_is_one_file_problem_naming_the_line(images):
    (images / "broken.json").write_text('[\n{"chosen": "a", "rejected": "b"},\n{"chosen": oops}\n]')
    records = read_records(images / "broken.json")
    assert records.records == [] and len(records.problems) == 1
    assert records.problems[0].line is None and "line 3" in records.problems[0].message


def test_margin_column_is_kept_and_must_be_on_every_record(images):
    base = {
        "prompt": USER_WITH_IMAGE,
        "chosen": assistant("red"),
        "rejected": assistant("blue"),
        "images": ["red.png"],
    }
    path = write_jsonl(images / "m.jsonl", [{**base, "margin": 2.5}, {**base, "margin": 0.5}])
    table = parse_image_pair_jsonl(path)
    assert [p.margin for p in table.pairs] == [2.5, 0.5]
    assert ImagePairDataset(table)[0]["margin_scores"].tolist() == [2.5]
    mixed = parse_image_pair_jsonl(write_jsonl(images / "mixed.jsonl", [{**base, "margin": 1.0}, base]))
    assert [(p.line, p.field) for p in mixed.problems] == [(2, "margin")]
    bad = parse_image_pair_jsonl(write_jsonl(images / "bad.jsonl", [{**base, "margin": "big"}]))
    assert [(p.line, p.field) for p in bad.problems] == [(1, "margin")]


def test_dataset_info_without_ranking_is_refused(images):
    write_jsonl(
        images / "sft.jsonl", [{"instruction": "x", "chosen": "a", "rejected": "b", "images": ["red.png"]}]
    )
    (images / "dataset_info.json").write_text(json.dumps({"sft": {"file_name": "sft.jsonl"}}))
    table = parse_image_pair_jsonl(images / "sft.jsonl")
    assert any('no "ranking": true' in p.message and p.line is None for p in table.problems)
