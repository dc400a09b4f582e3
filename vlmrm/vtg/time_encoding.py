"""How a segment (start, end) of a clip is written in the model's answer, and read back from it.

Three encodings, chosen by the `temporal:` config section (`build_encoding`):

- `SecondsEncoding`: "from 3.2 to 7.9 seconds" (absolute seconds of the trimmed clip).
- `RelativeEncoding(num_bins)`: "from 0.12 to 0.57": start / duration and end / duration, each rounded to
  a multiple of 1 / num_bins (so num_bins + 1 possible values 0, 1/num_bins, ..., 1), written as decimals.
- `TemporalTokenEncoding(num_tokens)`: "<123><456>" with one added token per index,
  index = round(t / duration * (num_tokens - 1)), so <0> is the clip start and <num_tokens-1> its end.

Every `parse` is total: model output is arbitrary text, so garbage gives None (counted as unparsed by
`ParseStats` and scored IoU 0), never an exception. Shared rules (`normalize_segment`): text around the
segment is ignored; a non-finite value (NaN, inf, or a literal too large for a float) is unparseable;
finite values outside [0, duration] are clamped into it; a reversed pair (end < start) is swapped, since
the model still named both boundaries; a zero-length result is kept (it scores IoU 0 on its own).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

TEMPORAL_TOKEN_PATTERN = re.compile(r"<(\d{1,9})>", re.ASCII)  # <12>; 9 digits bound the int() work
# A decimal literal not glued to a word or another number ("3-5" reads 3 and 5, "v2" reads nothing).
# ASCII digits only: unicode digits (e.g. full-width "３") are not a number format models are trained on.
NUMBER = r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
NUMBER_PATTERN = re.compile(NUMBER, re.ASCII)
# A clock time ("0:05", "1:02:03.5") or a plain number; a number is never the hours/minutes or the
# seconds of a clock time ("0:05" is one value, 5 s, not 0 and 5). A colon group is validated by
# `_clock_seconds`; one that is no valid time makes the whole answer unparseable.
CLOCK = r"\d+(?::\d+)+(?:\.\d+)?(?![\w:]|\.\d)"
VALUE = rf"(?<![\w.])(?<!\d:)(?:{CLOCK}|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?!:\d))"
VALUE_PATTERN = re.compile(VALUE, re.ASCII)
FROM_TO_PATTERN = re.compile(
    rf"from\s+({VALUE})\s*(?:s|sec|secs|seconds?)?\s+to\s+({VALUE})", re.ASCII | re.IGNORECASE
)
CLOCK_SECONDS = re.compile(r"[0-5]\d(?:\.\d+)?", re.ASCII)  # "05", "59.25": the last field
CLOCK_MINUTES = re.compile(r"[0-5]\d", re.ASCII)  # the middle field of hh:mm:ss
SINUSOID_BASE = 10000.0  # wavelength base of the transformer position encoding (Vaswani et al., 2017)
EmbeddingInit = Literal["sinusoidal", "mean"]


def normalize_segment(start: float, end: float, duration: float) -> tuple[float, float] | None:
    """The shared parse rules: None if either value is non-finite, else swapped into order and clamped.

    Returns (min(max(lo, 0), duration), min(max(hi, 0), duration)) with lo <= hi.
    """
    if not (math.isfinite(start) and math.isfinite(end) and math.isfinite(duration)) or duration <= 0:
        return None
    lo, hi = sorted((start, end))
    return min(max(lo, 0.0), duration), min(max(hi, 0.0), duration)


def _clock_seconds(token: str) -> float | None:
    """Seconds of "m:ss(.f)" or "h:mm:ss(.f)" (seconds and minutes fields two digits below 60);
    None for any other colon group ("1:2", "0:75", "1:2:3:4"), which is ambiguous."""
    fields = token.split(":")
    if len(fields) not in (2, 3) or not CLOCK_SECONDS.fullmatch(fields[-1]):
        return None
    if len(fields) == 3 and not CLOCK_MINUTES.fullmatch(fields[1]):
        return None
    if "." in "".join(fields[:-1]):
        return None
    seconds = float(fields[-1])
    for place, field in enumerate(reversed(fields[:-1]), start=1):
        seconds += int(field) * 60**place
    return seconds


def _value(token: str, allow_clock: bool) -> float | None:
    if ":" in token:
        return _clock_seconds(token) if allow_clock else None
    return float(token)


def _two_numbers(text: str, allow_clock: bool = True) -> tuple[float, float] | None:
    """The "from X to Y" pair if present, else the first two values in `text`; None if fewer.

    Values are numbers or, with ``allow_clock``, clock times (mm:ss, hh:mm:ss, with decimals) read as
    seconds. Any colon group that is not a valid time (or a time where none is allowed, or one glued
    to ",digits") makes the answer unparseable: a wrong number would score as a real prediction.
    """
    tokens = list(VALUE_PATTERN.finditer(text))
    clocks = [m.span() for m in tokens if ":" in m.group()]
    for glued in re.finditer(r"\d:\d", text):  # a colon between digits outside any time read: "12:30pm"
        if not any(start <= glued.start() and glued.end() <= end for start, end in clocks):
            return None
    values = []
    for match in tokens:
        if ":" in match.group() and re.match(r",\d", text[match.end() :]):
            return None  # "00:00:18,500": a comma decimal (SRT) or a list without spaces; ambiguous
        value = _value(match.group(), allow_clock)
        if value is None:
            return None
        values.append(value)
    match = FROM_TO_PATTERN.search(text)
    if match:
        return _value(match.group(1), allow_clock), _value(match.group(2), allow_clock)
    return (values[0], values[1]) if len(values) >= 2 else None


class TemporalEncoding(Protocol):
    def encode(self, start: float, end: float, duration: float) -> str: ...

    def parse(self, text: str, duration: float) -> tuple[float, float] | None: ...


@dataclass(frozen=True)
class SecondsEncoding:
    """ "from {start} to {end} seconds" with `decimals` decimals; the parser also accepts any text holding
    two values (the first two are taken when there is no "from X to Y"), numbers of seconds or clock
    times: "0:05 to 0:09" is (5, 9), "00:01:18.5 - 00:01:23" is (78.5, 83)."""

    decimals: int = 1

    def encode(self, start: float, end: float, duration: float) -> str:
        return f"from {start:.{self.decimals}f} to {end:.{self.decimals}f} seconds"

    def parse(self, text: str, duration: float) -> tuple[float, float] | None:
        pair = _two_numbers(text)
        return None if pair is None else normalize_segment(*pair, duration)


def _decimal(value: float, decimals: int) -> str:
    """`value` with at most `decimals` decimals and at least one: 0.5 -> "0.5", 1 -> "1.0"."""
    text = f"{value:.{decimals}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


@dataclass(frozen=True)
class RelativeEncoding:
    """ "from {a} to {b}" with a = round(start / duration * num_bins) / num_bins (b likewise), as decimals.

    Decimals, not bin integers, because `use_relative_timestamps` promises normalised 0-1 values; the
    written precision is enough to recover the bin exactly. Parsed values are multiplied back by the
    duration (not re-quantised: a model that writes more digits keeps them); values > 1 clamp to 1.
    """

    num_bins: int = 100

    def __post_init__(self) -> None:
        if self.num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {self.num_bins}")

    @property
    def decimals(self) -> int:
        """Digits that keep k / num_bins apart: error 0.5 * 10^-d < 0.5 / num_bins iff 10^d > num_bins."""
        return len(str(self.num_bins))

    def quantize(self, t: float, duration: float) -> float:
        """t / duration rounded to the nearest multiple of 1 / num_bins, clamped to [0, 1]."""
        return min(max(round(t / duration * self.num_bins), 0), self.num_bins) / self.num_bins

    def encode(self, start: float, end: float, duration: float) -> str:
        a, b = self.quantize(start, duration), self.quantize(end, duration)
        return f"from {_decimal(a, self.decimals)} to {_decimal(b, self.decimals)}"

    def parse(self, text: str, duration: float) -> tuple[float, float] | None:
        pair = _two_numbers(text, allow_clock=False)
        if pair is None:
            return None
        relative = normalize_segment(*pair, 1.0)
        return (
            None
            if relative is None
            else normalize_segment(relative[0] * duration, relative[1] * duration, duration)
        )


@dataclass(frozen=True)
class TemporalTokenEncoding:
    """ "<i><j>" with i = round(start / duration * (num_tokens - 1)); parse reads the first two <k> tokens,
    clamps k to num_tokens - 1 and maps back with t = k / (num_tokens - 1) * duration."""

    num_tokens: int = 1000

    def __post_init__(self) -> None:
        if self.num_tokens < 2:
            raise ValueError(f"num_tokens must be >= 2 (a start and an end token), got {self.num_tokens}")

    def index(self, t: float, duration: float) -> int:
        return min(max(round(t / duration * (self.num_tokens - 1)), 0), self.num_tokens - 1)

    def encode(self, start: float, end: float, duration: float) -> str:
        return f"<{self.index(start, duration)}><{self.index(end, duration)}>"

    def parse(self, text: str, duration: float) -> tuple[float, float] | None:
        found = TEMPORAL_TOKEN_PATTERN.findall(text)
        if len(found) < 2:
            return None
        last = self.num_tokens - 1
        i, j = (min(int(k), last) for k in found[:2])
        return normalize_segment(i / last * duration, j / last * duration, duration)


def build_encoding(temporal) -> TemporalEncoding:
    """The encoding a `temporal:` section asks for (any object with its field names).

    use_temporal_tokens wins over use_relative_timestamps; with neither, answers are in seconds.
    """
    if temporal.use_temporal_tokens:
        return TemporalTokenEncoding(temporal.num_temporal_tokens)
    if temporal.use_relative_timestamps:
        return RelativeEncoding(temporal.num_bins)
    return SecondsEncoding()


@dataclass
class ParseStats:
    """Counts of parsed and unparseable answers; `record` passes the parse result through."""

    parsed: int = 0
    unparsed: int = 0

    def record(self, result: tuple[float, float] | None) -> tuple[float, float] | None:
        if result is None:
            self.unparsed += 1
        else:
            self.parsed += 1
        return result

    @property
    def total(self) -> int:
        return self.parsed + self.unparsed

    @property
    def unparsed_rate(self) -> float:
        """unparsed / total; 0 when nothing was recorded."""
        return self.unparsed / self.total if self.total else 0.0


def temporal_token_strings(n: int) -> list[str]:
    """["<0>", "<1>", ..., "<n-1>"]."""
    return [f"<{i}>" for i in range(n)]


def sinusoidal_rows(num_rows: int, dim: int) -> torch.Tensor:
    """(num_rows, dim) position encoding: row i, column 2k = sin(i / B^(2k/dim)), 2k+1 = cos(same), B=10000.

    Neighbouring indices get similar rows (cosine similarity falls with |i - j|), so the new tokens start
    with the order of time built in instead of as unrelated vectors.
    """
    positions = torch.arange(num_rows, dtype=torch.float64)[:, None]  # (N, 1)
    frequencies = SINUSOID_BASE ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (ceil(D/2),)
    angles = positions * frequencies  # (N, ceil(D/2))
    rows = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (N, 2 * ceil(D/2))
    return rows[:, :dim]


def _init_rows(
    weight: torch.Tensor, new_ids: list[int], indices: list[int], old_rows: int, strategy: EmbeddingInit
) -> None:
    """Overwrite rows `new_ids` (temporal indices `indices`) of `weight` (V, D) from its first `old_rows` rows.

    mean: every new row = mean of the old rows (the standard "average embedding" init).
    sinusoidal: new row i = P_i * r / ||P_i|| with P = `sinusoidal_rows` of the token's index i and
    r = mean L2 norm of the old rows, so the rows are as large as real embeddings, ordered in time.
    """
    old = weight[:old_rows].detach().double()  # (V_old, D)
    if strategy == "mean":
        rows = old.mean(dim=0, keepdim=True).expand(len(new_ids), -1)
    elif strategy == "sinusoidal":
        rows = sinusoidal_rows(max(indices) + 1, weight.shape[1])[indices]
        rows = rows / rows.norm(dim=1, keepdim=True) * old.norm(dim=1).mean()
    else:
        raise ValueError(f"embedding_init_strategy must be 'sinusoidal' or 'mean', got {strategy!r}")
    with torch.no_grad():
        weight[new_ids] = rows.to(weight.dtype)


def add_temporal_tokens(
    processor, model, strategy: EmbeddingInit = "sinusoidal", num_tokens: int = 1000
) -> list[int]:
    """Add "<0>".."<num_tokens-1>" to the tokenizer, grow the embeddings, initialise the new rows.

    The tokens are added as normal (not special) tokens, so `decode(..., skip_special_tokens=True)` keeps
    them and `TemporalTokenEncoding.parse` sees them. Tokens already present are not added twice, and
    their rows are left alone (a reloaded fine-tuned model keeps its learned rows). The embedding matrix
    only grows (real Qwen checkpoints carry spare rows past the tokenizer). The input embeddings and,
    when untied, the LM head get rows by `_init_rows` with `strategy`, each from its own old rows.

    Returns:
        the token ids of "<0>", ..., "<num_tokens-1>", in index order.
    """
    if strategy not in ("sinusoidal", "mean"):  # before anything is changed
        raise ValueError(f"embedding_init_strategy must be 'sinusoidal' or 'mean', got {strategy!r}")
    tokenizer = getattr(processor, "tokenizer", processor)
    strings = temporal_token_strings(num_tokens)
    old_vocab = len(tokenizer)
    added = tokenizer.add_tokens(strings, special_tokens=False)
    ids = tokenizer.convert_tokens_to_ids(strings)
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    if added:
        indices = [k for k, i in enumerate(ids) if i >= old_vocab]
        new_ids = [ids[k] for k in indices]
        input_weight = model.get_input_embeddings().weight
        _init_rows(input_weight, new_ids, indices, old_vocab, strategy)
        output = model.get_output_embeddings()
        if output is not None and output.weight is not input_weight:
            _init_rows(output.weight, new_ids, indices, old_vocab, strategy)
    return ids
