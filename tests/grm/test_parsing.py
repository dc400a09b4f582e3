"""Verdict, reasoning and score parsing on real-looking generations; judging in the order shown."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from vlmrm.grm.parsing import (
    ANSWER_TAG,
    FALLBACK,
    JudgeStats,
    filtered_record,
    judge,
    parse_reasoning,
    parse_score_totals,
    parse_verdict,
    shown_items,
)
from vlmrm.grm.sources import GRMSample

COT_T2I = """<think>
1. Semantic consistency: Image 1 (9/10) - the cat wears a red hat; Image 2 (6/10) - the hat is blue.
2. Aesthetics: Image 1 (8/10) - soft light; Image 2 (8/10) - also pleasant.
3. Authenticity: Image 1 (7/10) - fur looks real; Image 2 (9/10) - photographic.
Image 2 is better in authenticity, but the prompt asks for a red hat.
Total score:
Image 1: 9+8+7=24
Image 2: 6+8+9=23
</think>
<answer>Image 1 is better</answer>"""

GENERATIONS = [
    # (name, text, choice as shown, method)
    ("cot with tags", COT_T2I, 1, ANSWER_TAG),
    ("no tags", "Both are sharp. Overall, Image 2 is better.", 2, FALLBACK),
    (
        "both phrases, no tags: the last wins",
        "Image 1 is better in composition, but weighing everything, Image 2 is better.",
        2,
        FALLBACK,
    ),
    (
        "answer tag beats a later phrase",
        "<answer>Image 1 is better</answer>\nNote: Image 2 is better lit.",
        1,
        ANSWER_TAG,
    ),
    ("garbage", "I am unable to view images. ####", None, None),
    ("empty", "", None, None),
    (
        "equally good in answer",
        "<think>close call</think><answer>Both images are equally good.</answer>",
        "tie",
        ANSWER_TAG,
    ),
    ("equally good without tags", "They are equally good overall", "tie", FALLBACK),
    ("markdown", "**Final verdict:** **Video 2** is better!", 2, FALLBACK),
    ("bare answer", "<answer> Image 2. </answer>", 2, ANSWER_TAG),
    ("bare number", "<answer>1</answer>", 1, ANSWER_TAG),
    ("upper case", "<ANSWER>VIDEO 1 IS BETTER</ANSWER>", 1, ANSWER_TAG),
    ("adverb", "<answer>Image 2 is slightly better</answer>", 2, ANSWER_TAG),
    ("conflicting answer", "<answer>Image 1 is better. Image 2 is better.</answer>", None, None),
    ("negation is no verdict", "Image 1 is not better than the other one.", None, None),
    (
        "not equally good",
        "They are not equally good: Image 1 is better.",
        1,
        FALLBACK,
    ),
    (
        "empty answer falls back",
        "<think>so Video 2 is better</think><answer>see above</answer>",
        2,
        FALLBACK,
    ),
    ("truncated generation", "<think>Image 1 shows a cat while Image 2", None, None),
    ("image 12 is no item", "Image 12 is better", None, None),
]


@pytest.mark.parametrize(("name", "text", "choice", "method"), GENERATIONS, ids=[g[0] for g in GENERATIONS])
def test_verdict_table(name, text, choice, method):
    answer = parse_verdict(text)
    assert (answer.choice, answer.method) == (choice, method)


@pytest.mark.parametrize(
    ("text", "reasoning"),
    [
        ("<think>\n  look closely \n</think><answer>Image 1 is better</answer>", "look closely"),
        ("template opened it</think>\n<answer>Image 2 is better</answer>", "template opened it"),
        ("<think>cut off mid", None),
        ("Image 1 is better", None),
    ],
)
def test_reasoning(text, reasoning):
    assert parse_reasoning(text) == reasoning


@pytest.mark.parametrize(
    ("text", "totals"),
    [
        (COT_T2I, (24.0, 23.0)),
        (
            "Video 1 total score: 24\nVideo 2 total score: 21.5\n<answer>Video 1 is better</answer>",
            (24.0, 21.5),
        ),
        ("**Total scores:**\n- **Video 1**: 27\n- **Video 2**: 18", (27.0, 18.0)),
        # no totals line: per-dimension x/10 scores summed
        ("Alignment: Video 1 (8/10), Video 2 (5/10)\nCoherence: Video 1: 7/10, Video 2: 9/10", (15.0, 14.0)),
        ("Image 1 is better", None),
        ("Total score:\nVideo 1: 20", None),
    ],
)
def test_score_totals(text, totals):
    assert parse_score_totals(text) == totals


def pair(ground_truth, media="image") -> GRMSample:
    return GRMSample("s#0", "hpdv3", "a cat", (Path("good.png"), Path("bad.png")), media, ground_truth)


@pytest.mark.parametrize(
    ("ground_truth", "shown_order", "text", "predicted", "correct"),
    [
        (1, (1, 2), "<answer>Image 1 is better</answer>", 1, True),
        (1, (2, 1), "<answer>Image 2 is better</answer>", 1, True),  # the better one was shown second
        (1, (2, 1), "<answer>Image 1 is better</answer>", 2, False),
        (2, (2, 1), "<answer>Image 1 is better</answer>", 2, True),
        (1, (1, 2), "<answer>equally good</answer>", "tie", False),
        (1, (1, 2), "no idea", None, False),
        ("tie", (2, 1), "<answer>Image 1 is better</answer>", 2, None),
    ],
)
def test_judge_maps_the_shown_order_back(ground_truth, shown_order, text, predicted, correct):
    verdict = judge(pair(ground_truth), shown_order, text)
    assert (verdict.predicted, verdict.correct) == (predicted, correct)
    assert verdict.parsed == (predicted is not None)


def test_judge_keeps_reasoning_and_totals_as_shown():
    verdict = judge(pair(1), (1, 2), COT_T2I)
    assert verdict.reasoning.startswith("1. Semantic consistency") and verdict.score_totals == (24.0, 23.0)


def test_filtered_record_lists_items_as_shown():
    sample = pair(1, media="video")
    text = "<think>clip 2 flows</think><answer>Video 2 is better</answer>"
    record = filtered_record(sample, (2, 1), "Judge: a cat", text, judge(sample, (2, 1), text), video_fps=2.0)
    assert shown_items(sample, (2, 1)) == (Path("bad.png"), Path("good.png"))
    assert record.items_shown == ("bad.png", "good.png")
    assert (record.ground_truth, record.ground_truth_shown, record.predicted) == (1, 2, 1)
    assert record.reasoning == "clip 2 flows" and record.video_fps == 2.0
    wrong = "<answer>Video 1 is better</answer>"
    with pytest.raises(ValueError, match="only a correct verdict"):
        filtered_record(sample, (2, 1), "Judge", wrong, judge(sample, (2, 1), wrong))


def test_stats_count_ties_apart_and_accuracy_over_non_ties():
    stats = JudgeStats()
    shown = (1, 2)
    for truth, text in [
        (1, "<answer>Image 1 is better</answer>"),  # correct
        (2, "<answer>Image 2 is better</answer>"),  # correct
        (1, "<answer>Image 2 is better</answer>"),  # parsed, wrong
        (2, "garbage"),  # unparseable, wrong
        ("tie", "<answer>Image 1 is better</answer>"),  # tie: skipped
    ]:
        stats.add(judge(pair(truth), shown, text))
    stats.add_tie()
    assert stats.to_dict() == {
        "total": 6,
        "parsed": 3,
        "unparseable": 1,
        "correct": 2,
        "ties_skipped": 2,
        "accuracy": 0.5,
        "parse_rate": 0.75,
    }
    assert JudgeStats.from_dict(stats.to_dict()) == stats


def test_stats_without_judged_samples_write_null_rates():
    stats = JudgeStats()
    stats.add_tie()
    assert math.isnan(stats.accuracy)
    assert stats.to_dict()["accuracy"] is None and stats.to_dict()["parse_rate"] is None
