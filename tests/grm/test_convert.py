"""Conversion to SFT data: the answer names the better item in the order the media are listed."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from vlmrm.grm.convert import convert_file, main, to_sft_example
from vlmrm.grm.parsing import filtered_record, judge, parse_verdict
from vlmrm.grm.records import FilteredSample, RecordError, append_filtered_jsonl, read_filtered_jsonl
from vlmrm.grm.sources import GRMSample

BETTER, WORSE = "media/better.png", "media/worse.png"
FPS = 2.0


def generation(better_shown: int, word: str = "Image") -> str:
    """What a correct model writes when the better item is shown at position ``better_shown``."""
    worse_shown = 3 - better_shown
    return (
        f"<think>\n{word} {better_shown} matches the prompt; {word} {worse_shown} has artefacts.\n"
        f"Total score:\n{word} {better_shown}: 9+9+8=26\n{word} {worse_shown}: 5+6+7=18\n</think>\n"
        f"<answer>{word} {better_shown} is better</answer>"
    )


def kept(ground_truth: int, shown_order: tuple[int, int], media: str = "image") -> FilteredSample:
    """A kept sample through the real pipeline: source sample -> judged generation -> record."""
    items = (Path(BETTER), Path(WORSE)) if ground_truth == 1 else (Path(WORSE), Path(BETTER))
    sample = GRMSample("hpdv3:d.json#7", "hpdv3", "a red cube", items, media, ground_truth)
    better_shown = shown_order.index(ground_truth) + 1
    text = generation(better_shown, "Image" if media == "image" else "Video")
    verdict = judge(sample, shown_order, text)
    return filtered_record(sample, shown_order, "Which is better for: a red cube?", text, verdict, FPS)


def answered_item(example: dict) -> str:
    """The path the gpt turn's answer points at, read as a trainee would: position in "images"."""
    answer = re.search(r"<answer>(.*)</answer>", example["conversations"][1]["value"]).group(1)
    return example["images"][parse_verdict(f"<answer>{answer}</answer>").choice - 1]


@pytest.mark.parametrize("ground_truth", [1, 2])
def test_swap_the_answer_points_at_the_better_item_in_both_shown_orders(ground_truth):
    examples = {order: to_sft_example(kept(ground_truth, order)) for order in ((1, 2), (2, 1))}
    for order, example in examples.items():
        assert answered_item(example) == BETTER, (order, example)
        # reasoning and answer number the media the same way
        answer = example["conversations"][1]["value"]
        better_shown = example["images"].index(BETTER) + 1
        assert f"Image {better_shown} matches the prompt" in answer
        assert answer.endswith(f"<answer>Image {better_shown} is better</answer>")
    assert examples[(1, 2)]["images"] == list(reversed(examples[(2, 1)]["images"]))


def test_example_format_video():
    example = to_sft_example(kept(2, (2, 1), media="video"))
    assert example == {
        "conversations": [
            {"from": "human", "value": "Which is better for: a red cube?"},
            {"from": "gpt", "value": generation(1, "Video")},
        ],
        "images": [BETTER, WORSE],
        "video_fps": FPS,
    }
    assert "video_fps" not in to_sft_example(kept(1, (1, 2)))


def test_fps_override_and_instruction_template():
    example = to_sft_example(kept(1, (1, 2), media="video"), "Judge two clips of {prompt}.", video_fps=4.0)
    assert example["video_fps"] == 4.0
    assert example["conversations"][0]["value"] == "Judge two clips of a red cube."
    with pytest.raises(ValueError, match=r"\{prompt\}"):
        to_sft_example(kept(1, (1, 2)), "no placeholder")


def test_without_reasoning_only_the_answer():
    record = replace(kept(1, (2, 1)), reasoning=None)
    assert to_sft_example(record)["conversations"][1]["value"] == "<answer>Image 2 is better</answer>"


def test_wrong_or_tied_records_are_refused():
    wrong = replace(kept(1, (1, 2)), predicted=2)
    with pytest.raises(ValueError, match="only correctly judged"):
        to_sft_example(wrong)
    tied = replace(kept(1, (1, 2)), ground_truth="tie", predicted="tie")
    with pytest.raises(ValueError, match="tie"):
        to_sft_example(tied)


def test_record_round_trip_and_field_errors(tmp_path):
    records = [kept(1, (1, 2)), kept(2, (2, 1), media="video")]
    path = tmp_path / "filtered.jsonl"
    append_filtered_jsonl(path, records[:1])
    append_filtered_jsonl(path, records[1:])  # resumed run appends
    assert read_filtered_jsonl(path) == records
    assert records[1].score_totals == (26.0, 18.0)
    good = records[0].to_json()
    for bad, match in [
        ({**good, "shown_order": [1, 1]}, "shown_order"),
        ({**good, "predicted": True}, "'predicted'"),
        ({**good, "items_shown": ["a.png"]}, "items_shown"),
        ({**good, "media": "audio"}, "'media'"),
        ({**good, "colour": "red"}, r"unknown field\(s\) \['colour'\]"),
        ({k: v for k, v in good.items() if k != "prompt"}, r"missing field\(s\) \['prompt'\]"),
        ({**good, "prompt": 3}, "'prompt' must be a string"),
    ]:
        with pytest.raises(ValueError, match=match):
            FilteredSample.from_json(bad)
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "media": "audio"}) + "\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:2: .*'media'"):
        read_filtered_jsonl(path)
    assert issubclass(RecordError, ValueError)


def test_cli_converts_a_file(tmp_path, capsys):
    source = tmp_path / "filtered.jsonl"
    append_filtered_jsonl(source, [kept(1, (2, 1)), kept(2, (1, 2), media="video")])
    output = tmp_path / "out" / "sft.json"
    main(["--input", str(source), "--output", str(output)])
    examples = json.loads(output.read_text())
    assert [answered_item(e) for e in examples] == [BETTER, BETTER]
    assert json.loads(capsys.readouterr().out) == {"output": str(output), "image": 1, "video": 1}


def test_cli_instruction_from_file_and_bad_line_named(tmp_path):
    template = tmp_path / "instruction.txt"
    template.write_text("Prompt: {prompt}\nCompare.")
    source = tmp_path / "filtered.jsonl"
    append_filtered_jsonl(source, [kept(1, (1, 2))])
    output = tmp_path / "sft.json"
    main(["--input", str(source), "--output", str(output), "--task_instruction", f"@{template}"])
    assert json.loads(output.read_text())[0]["conversations"][0]["value"] == "Prompt: a red cube\nCompare."
    wrong = {**kept(1, (1, 2)).to_json(), "predicted": 2}
    with source.open("a") as handle:
        handle.write(json.dumps(wrong) + "\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(source))}:2: .*only correctly judged"):
        convert_file(source, output)
