"""Reading a GRM generation: verdict, reasoning, score totals; judging it against the ground truth.

Verdict (:func:`parse_verdict`), all matching case-insensitive:

1. The last complete ``<answer>…</answer>`` block. Inside it, every verdict phrase — ``Image 1 is
   better``, ``Video 2 is better`` (markdown ``**``, quotes, colons and other punctuation between
   the words are tolerated), or ``equally good`` (a tie) — must agree; a bare ``Image 2``,
   ``2`` or ``tie`` as the whole answer also counts. Conflicting phrases in the answer make the
   generation unparseable (no fallback: the model's own final answer is ambiguous).
2. Fallback, when there is no answer block or it holds no verdict: the **last** verdict phrase in
   the whole text (a model that reasons "Image 2 is better in colour ... overall Image 1 is
   better" without tags means its last statement).

"is not better" is no verdict. The word Image/Video is not checked against the media: the number
is what counts.

Reasoning: the text of the first ``<think>…</think>``; with no opening tag (chat templates that
open the think block in the prompt), the text before the first ``</think>``; none otherwise.

Score totals (:func:`parse_score_totals`), per item in the order shown, as the default
instruction asks (:mod:`vlmrm.grm.instructions`: scores 1-10 per dimension, totals by summing): the last
``Total score …`` section's ``Video 1: 8+7+9=24`` / ``Image 2: 21`` / ``Video 1 total score: 24``
lines; without one, the sum of per-dimension ``Video 1 (8/10)`` / ``Video 1: 8/10`` scores.

:func:`judge` maps the verdict, which numbers items **as shown**, back to the original items before
comparing with the ground truth; :func:`filtered_record` builds what is written for a kept sample;
:class:`JudgeStats` accumulates the stats file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

from vlmrm.grm.records import TIE, Choice, FilteredSample, ShownOrder, check_shown_order, to_original
from vlmrm.grm.sources import GRMSample

FILLER = r"[\s*_\"'`:#.,!)(\[\]-]*"
"""Markdown and punctuation tolerated between the words of a verdict phrase."""
ITEM_BETTER = re.compile(
    rf"\b(?:image|video){FILLER}([12])\b{FILLER}is{FILLER}(?:(?!not\b|no\b)[a-z]+{FILLER})?better\b",
    re.IGNORECASE,
)
"""``Image 1 is better``, ``**Video 2** is clearly better`` (one adverb allowed; not "not")."""
EQUALLY_GOOD = re.compile(r"(?<!not\s)\bequally\s+good\b", re.IGNORECASE)
BARE_ANSWER = re.compile(r"^\W*(?:(?:image|video)\s*)?([12]|tie)\W*$", re.IGNORECASE)
ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.IGNORECASE | re.DOTALL)
THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
NUMBER = r"(\d+(?:\.\d+)?)"
TOTAL_HEADING = re.compile(r"total\s*scores?", re.IGNORECASE)
TOTAL_LINE = re.compile(
    rf"(?:image|video){FILLER}([12])\b(?:{FILLER}total{FILLER}scores?)?{FILLER}"
    rf"(?:[\d.\s+]*=\s*)?\**{NUMBER}",
    re.IGNORECASE,
)
"""``Video 1: 8+7+9=24``, ``Image 2: 21``, ``**Video 1** total score: 24`` (the number after ``=``)."""
DIMENSION_SCORE = re.compile(
    rf"(?:image|video){FILLER}([12])\b\s*(?:\(|:)\s*{NUMBER}\s*/\s*10", re.IGNORECASE
)
"""``Video 1 (8/10)`` or ``Image 2: 7/10``: one dimension's score."""
ANSWER_TAG, FALLBACK = "answer_tag", "fallback"


@dataclass(frozen=True)
class ParsedAnswer:
    """``choice``: 1, 2 or tie as numbered in the text (None: unparseable); ``method``:
    ``answer_tag``, ``fallback`` or None."""

    choice: Choice | None
    method: str | None


def _phrases(text: str) -> list[tuple[int, Choice]]:
    """Every verdict phrase in ``text`` as (position, choice), in order."""
    found: list[tuple[int, Choice]] = [(m.start(), int(m.group(1))) for m in ITEM_BETTER.finditer(text)]
    found += [(m.start(), TIE) for m in EQUALLY_GOOD.finditer(text)]
    return sorted(found, key=lambda hit: hit[0])


def parse_verdict(text: str) -> ParsedAnswer:
    """The verdict of a generation, in the order shown (rules: the module docstring)."""
    blocks = ANSWER_BLOCK.findall(text)
    if blocks:
        answer = blocks[-1]
        choices = {choice for _, choice in _phrases(answer)}
        if len(choices) > 1:
            return ParsedAnswer(None, None)
        if choices:
            return ParsedAnswer(choices.pop(), ANSWER_TAG)
        bare = BARE_ANSWER.match(answer)
        if bare:
            value = bare.group(1).lower()
            return ParsedAnswer(TIE if value == TIE else int(value), ANSWER_TAG)
    phrases = _phrases(text)
    if phrases:
        return ParsedAnswer(phrases[-1][1], FALLBACK)
    return ParsedAnswer(None, None)


def parse_reasoning(text: str) -> str | None:
    """The stripped text of the think block (rules: the module docstring)."""
    block = THINK_BLOCK.search(text)
    if block:
        return block.group(1).strip()
    close = THINK_CLOSE.search(text)
    return text[: close.start()].strip() if close else None


def parse_score_totals(text: str) -> tuple[float, float] | None:
    """(total of item 1, total of item 2) as shown, or None when either is absent."""
    headings = list(TOTAL_HEADING.finditer(text))
    totals: dict[int, float] = {}
    if headings:
        # From the last heading's line on: "Total score:\nVideo 1: ...\nVideo 2: ..."
        start = text.rfind("\n", 0, headings[-1].start()) + 1
        for match in TOTAL_LINE.finditer(text[start:]):
            totals.setdefault(int(match.group(1)), float(match.group(2)))
        # "Video 1 total score: 24": each line may carry its own heading
        for heading in headings:
            line_start = text.rfind("\n", 0, heading.start()) + 1
            line_end = text.find("\n", heading.end())
            match = TOTAL_LINE.search(text[line_start : None if line_end < 0 else line_end])
            if match:
                totals.setdefault(int(match.group(1)), float(match.group(2)))
    if len(totals) < 2:
        dimension_totals: dict[int, float] = {}
        for match in DIMENSION_SCORE.finditer(text):
            item = int(match.group(1))
            dimension_totals[item] = dimension_totals.get(item, 0.0) + float(match.group(2))
        totals = dimension_totals if len(dimension_totals) == 2 else totals
    if len(totals) < 2:
        return None
    return totals[1], totals[2]


@dataclass(frozen=True)
class Verdict:
    """A judged generation. ``predicted_shown`` numbers items as shown; ``predicted`` as the
    source does. ``correct`` is None when the ground truth is a tie (not judged), else whether
    ``predicted`` equals it (an unparseable generation is wrong)."""

    parsed: bool
    predicted: Choice | None
    predicted_shown: Choice | None
    ground_truth: Choice
    correct: bool | None
    method: str | None
    reasoning: str | None
    score_totals: tuple[float, float] | None


def judge(sample: GRMSample, shown_order: ShownOrder, generated_text: str) -> Verdict:
    """Parse ``generated_text`` (about the items in ``shown_order``) and compare with the truth.

    Args:
        sample: the pair; ``sample.ground_truth`` numbers its items as loaded.
        shown_order: original item number shown first and second, ``(1, 2)`` or ``(2, 1)``.
        generated_text: the whole generation.
    """
    answer = parse_verdict(generated_text)
    predicted = None if answer.choice is None else to_original(answer.choice, shown_order)
    tie_truth = sample.ground_truth == TIE
    return Verdict(
        parsed=answer.choice is not None,
        predicted=predicted,
        predicted_shown=answer.choice,
        ground_truth=sample.ground_truth,
        correct=None if tie_truth else predicted == sample.ground_truth,
        method=answer.method,
        reasoning=parse_reasoning(generated_text),
        score_totals=parse_score_totals(generated_text),
    )


def shown_items(sample: GRMSample, shown_order: ShownOrder) -> tuple[Path, Path]:
    """The sample's items in the order shown: ``shown_items(s, (2, 1)) == (s.items[1], s.items[0])``."""
    first, second = check_shown_order(shown_order)
    return sample.items[first - 1], sample.items[second - 1]


def filtered_record(
    sample: GRMSample,
    shown_order: ShownOrder,
    instruction: str,
    generated_text: str,
    verdict: Verdict,
    video_fps: float | None = None,
) -> FilteredSample:
    """The record rejection sampling writes for a kept sample (``verdict.correct`` must be True)."""
    if not verdict.correct:
        raise ValueError(f"sample {sample.sample_id}: only a correct verdict is kept, got {verdict}")
    return FilteredSample(
        sample_id=sample.sample_id,
        source=sample.source,
        media=sample.media,
        prompt=sample.prompt,
        instruction=instruction,
        items_shown=tuple(str(p) for p in shown_items(sample, shown_order)),
        shown_order=shown_order,
        ground_truth=sample.ground_truth,
        generated_text=generated_text,
        predicted=verdict.predicted,
        reasoning=verdict.reasoning,
        score_totals=verdict.score_totals,
        video_fps=video_fps if sample.media == "video" else None,
        extra=dict(sample.extra),
    )


@dataclass
class JudgeStats:
    """Counts for the stats file. ``total`` = ``ties_skipped`` + ``parsed`` + ``unparseable``:
    ground-truth ties are counted on their own and nowhere else; ``correct`` counts kept samples.

    accuracy = correct / (total - ties_skipped), unparseable counted wrong (nan when no non-tie
    sample; null in :meth:`to_dict`); parse_rate = parsed / (total - ties_skipped).
    """

    total: int = 0
    parsed: int = 0
    unparseable: int = 0
    correct: int = 0
    ties_skipped: int = 0

    def add(self, verdict: Verdict) -> None:
        self.total += 1
        if verdict.ground_truth == TIE:
            self.ties_skipped += 1
            return
        self.parsed += verdict.parsed
        self.unparseable += not verdict.parsed
        self.correct += bool(verdict.correct)

    def add_tie(self) -> None:
        """A ground-truth tie skipped before generation."""
        self.total += 1
        self.ties_skipped += 1

    @property
    def judged(self) -> int:
        return self.total - self.ties_skipped

    @property
    def accuracy(self) -> float:
        return self.correct / self.judged if self.judged else float("nan")

    @property
    def parse_rate(self) -> float:
        return self.parsed / self.judged if self.judged else float("nan")

    def to_dict(self) -> dict:
        counts = {f.name: getattr(self, f.name) for f in fields(self)}
        rates = {"accuracy": self.accuracy, "parse_rate": self.parse_rate}
        return {**counts, **{k: None if math.isnan(v) else v for k, v in rates.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> JudgeStats:
        """Counts of a stats file (for a resumed run); the derived rates are recomputed."""
        return cls(**{f.name: int(data[f.name]) for f in fields(cls)})
