"""The GRM closed loop (``python -m vlmrm.grm.closed_loop``): the templated cold-start reasoning
names the colours drawn in the order shown (both orders), and, slow, the whole loop on the tiny
qwen2_vl under ``./run_distributed.sh --gpus 2``: cold-start SFT -> held-out evaluation ->
rejection sampling -> conversion -> second SFT."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from vlmrm.grm.closed_loop import cold_start_examples, drawn_colour, main, templated_reasoning
from vlmrm.testing.synthetic import PALETTE
from vlmrm.testing.synthetic_images import SyntheticImageConfig, draw_image, generate_image_pairs

NUM_TEST = 64
MIN_ACCURACY = 0.75
"""Chance is 0.5: P(Binomial(64, 0.5) >= 48) is about 3e-5, so 0.75 on 64 pairs is a learned rule."""
MIN_PARSE_RATE = 0.9
MIN_KEPT_FRACTION = 0.5
NUM_POOL = 64


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    generate_image_pairs(SyntheticImageConfig(folder, 24, 0, 0.0, 3, schemas=("image_preference",)))
    return folder / "train.jsonl"


def test_drawn_colour_reads_the_pixels(pairs):
    for line in pairs.read_text().splitlines():
        record = json.loads(line)
        asked = record["prompt"].split()[1]
        better, worse = ("image_A", "image_B") if record["label"] == "A" else ("image_B", "image_A")
        assert drawn_colour(pairs.parent / record[better]) == asked
        assert drawn_colour(pairs.parent / record[worse]) in set(PALETTE) - {asked}


def test_cold_start_reasoning_names_colours_in_shown_order_and_matches_the_answer(pairs):
    examples = cold_start_examples(pairs, seed=0)
    assert len(examples) == 24
    first_better = 0
    for example in examples:
        human, gpt = (turn["value"] for turn in example["conversations"])
        think, answer = re.fullmatch(
            r"<think>\n(.*)\n</think>\n<answer>(.*)</answer>", gpt, re.DOTALL
        ).groups()
        shown = re.findall(r"a (\w+) \w+ is in Image (\d)", think)
        assert [int(k) for _, k in shown[:2]] == [1, 2]
        for (colour, _), path in zip(shown[:2], example["images"]):
            assert colour == drawn_colour(path)
        asked = re.search(r"Which image shows an? (\w+)", human).group(1)
        winner = [colour for colour, _ in shown[:2]].index(asked) + 1
        assert answer == f"Image {winner} is better"
        assert shown[2] == (asked, str(winner))
        first_better += winner == 1
    assert 0 < first_better < len(examples), "both shown orders must occur"


def test_templated_reasoning_example(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for colour in ("blue", "red"):
        paths.append(tmp_path / f"{colour}.png")
        draw_image(colour, "square", rng).save(paths[-1])
    assert templated_reasoning("a red square", tuple(paths)) == (
        "a blue square is in Image 1; a red square is in Image 2. "
        "The caption asks for a red square; a red square is in Image 2."
    )


@pytest.mark.slow
def test_closed_loop_end_to_end(tmp_path):
    """About 3 minutes on 2 cores (measured 164 s for the loop)."""
    counts = main(["--out", str(tmp_path), "--num_pool", str(NUM_POOL), "--num_test", str(NUM_TEST)])
    cold = counts["cold_start_eval"]
    assert cold["total"] == NUM_TEST
    assert cold["accuracy"] >= MIN_ACCURACY, cold
    assert cold["parse_rate"] >= MIN_PARSE_RATE, cold
    sampling = counts["rejection_sampling"]
    assert sampling["total"] == NUM_POOL
    assert sampling["kept"] > MIN_KEPT_FRACTION * NUM_POOL, sampling
    assert counts["converted"] == sampling["kept"]
    assert (tmp_path / "second" / "grm_run.json").is_file()
    assert counts["second_eval"]["total"] == NUM_TEST
    assert json.loads((tmp_path / "closed_loop.json").read_text()) == counts
