"""Segment encodings: exact strings, round trips, total parsers on garbage, and temporal tokens added to a
real (tiny) Qwen3-VL model and processor."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForImageTextToText, AutoProcessor

from vlmrm.testing.tiny import tiny_checkpoint
from vlmrm.vtg.time_encoding import (
    ParseStats,
    RelativeEncoding,
    SecondsEncoding,
    TemporalTokenEncoding,
    add_temporal_tokens,
    build_encoding,
    normalize_segment,
    sinusoidal_rows,
    temporal_token_strings,
)

ENCODINGS = [SecondsEncoding(), RelativeEncoding(100), TemporalTokenEncoding(1000)]
IDS = ["seconds", "relative", "tokens"]
GARBAGE = [
    "",
    "   ",
    "I cannot tell from this video.",
    "nan to nan",
    "from nan to 5.0 seconds",
    "from inf to 5",
    "from 1e999 to 5 seconds",  # 1e999 overflows to inf: non-finite, unparseable
    "from 5 to " + "9" * 400,  # a 400-digit literal is inf as a float
    "<abc><def>",
    "<5>",
    "from ３ to ７ seconds",  # full-width digits are not ASCII numbers
    "从三秒到七秒",
    "\x00\ufffd\U0001f600",
    "<|im_end|>",
    "5",
]


@pytest.mark.parametrize("encoding", ENCODINGS, ids=IDS)
@pytest.mark.parametrize("text", GARBAGE)
def test_garbage_is_unparseable_not_an_error(encoding, text):
    assert encoding.parse(text, 10.0) is None


def test_seconds_encoding_strings_and_parsing():
    enc = SecondsEncoding()
    assert enc.encode(3.24, 7.9, 10.0) == "from 3.2 to 7.9 seconds"
    assert enc.parse("from 3.2 to 7.9 seconds", 10.0) == (3.2, 7.9)
    assert enc.parse("The event happens From 3.0s to 5.5s, I think.", 10.0) == (3.0, 5.5)
    assert enc.parse("3.0 - 5.5", 10.0) == (3.0, 5.5)  # "-" between numbers is a dash, not a sign
    assert enc.parse("from 7 to 3 seconds", 10.0) == (3.0, 7.0)  # reversed: swapped
    assert enc.parse("from -3 to 50 seconds", 10.0) == (0.0, 10.0)  # out of range: clamped
    assert enc.parse("from 2 to 99999999999999999999 seconds", 10.0) == (2.0, 10.0)  # huge but finite
    assert enc.parse("from 12 to 15 seconds", 10.0) == (10.0, 10.0)  # both past the end: zero length, IoU 0
    assert enc.parse("from 1e0 to 2.5E0 seconds", 10.0) == (1.0, 2.5)
    assert enc.parse("step 1: from 2 to 4", 10.0) == (
        2.0,
        4.0,
    )  # "from X to Y" wins over the first two numbers


def test_relative_encoding_strings_and_parsing():
    enc = RelativeEncoding(100)
    # 1.2 / 10 * 100 = 12 -> 0.12; 5.7 / 10 * 100 = 57 -> 0.57
    assert enc.encode(1.2, 5.7, 10.0) == "from 0.12 to 0.57"
    assert enc.encode(0.0, 10.0, 10.0) == "from 0.0 to 1.0"
    # 1.234 / 10 * 100 = 12.34 -> bin 12
    assert enc.encode(1.234, 5.0, 10.0) == "from 0.12 to 0.5"
    assert RelativeEncoding(1000).encode(1.234, 5.0, 10.0) == "from 0.123 to 0.5"
    # 3 bins need 1 decimal (10 > 3): 1/3 -> "0.3", which still rounds back to bin 1 (0.3 * 3 = 0.9)
    assert RelativeEncoding(3).encode(1.0, 2.0, 3.0) == "from 0.3 to 0.7"
    assert enc.parse("from 0.25 to 0.5", 20.0) == (5.0, 10.0)
    assert enc.parse("from 0.5 to 1.7", 20.0) == (10.0, 20.0)  # > 1 clamps to the clip end
    assert enc.parse("0.9 0.1", 10.0) == pytest.approx((1.0, 9.0))  # reversed: swapped
    assert enc.parse("from 12 to 57", 10.0) == (10.0, 10.0)  # bin integers are not this format: clamp to 1


def test_temporal_token_encoding_strings_and_parsing():
    enc = TemporalTokenEncoding(1000)
    # round(2.5 / 10 * 999) = round(249.75) = 250; the end maps to the last token, 999
    assert enc.encode(2.5, 10.0, 10.0) == "<250><999>"
    assert enc.encode(0.0, 5.0, 9.99) == "<0><500>"  # 5 / 9.99 * 999 = 500
    assert enc.parse("Answer: <0><999> done", 10.0) == (0.0, 10.0)
    assert enc.parse("<999><0>", 10.0) == (0.0, 10.0)  # reversed: swapped
    assert enc.parse("<5000><999999999>", 10.0) == (10.0, 10.0)  # indices past 999 clamp to 999
    assert enc.parse("<1><2><3>", 999.0) == (1.0, 2.0)  # the first two tokens; t = k / 999 * 999
    assert enc.parse("<-3><7>", 10.0) is None  # "<-3>" is not a token: only one left
    assert enc.parse("from 1.0 to 2.0 seconds", 10.0) is None  # numbers are not tokens


@pytest.mark.parametrize("encoding", ENCODINGS, ids=IDS)
@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_parse_is_total_on_any_text(encoding, text):
    result = encoding.parse(text, 10.0)
    assert result is None or 0.0 <= result[0] <= result[1] <= 10.0


@settings(max_examples=300, deadline=None)
@given(
    duration=st.floats(0.5, 3600.0),
    a=st.floats(0.0, 1.0),
    b=st.floats(0.0, 1.0),
)
def test_round_trip_within_each_encodings_resolution(duration, a, b):
    start, end = sorted((a * duration, b * duration))
    # Seconds: 1 decimal -> error <= 0.05 s (+ float slack). Relative: half a bin = duration / 200.
    # Tokens: half a step = duration / (2 * 999).
    tolerances = [0.05 + 1e-9, duration / 200 * (1 + 1e-9), duration / 1998 * (1 + 1e-9)]
    for encoding, tol in zip(ENCODINGS, tolerances):
        parsed = encoding.parse(encoding.encode(start, end, duration), duration)
        assert parsed is not None
        assert abs(parsed[0] - start) <= tol + 1e-9 * duration
        assert abs(parsed[1] - end) <= tol + 1e-9 * duration


def test_normalize_segment_rules():
    assert normalize_segment(float("nan"), 3.0, 10.0) is None
    assert normalize_segment(1.0, 3.0, float("inf")) is None
    assert normalize_segment(1.0, 3.0, 0.0) is None
    assert normalize_segment(8.0, -2.0, 10.0) == (0.0, 8.0)


def test_build_encoding_follows_the_temporal_section():
    section = SimpleNamespace(
        num_bins=50, use_relative_timestamps=True, use_temporal_tokens=False, num_temporal_tokens=100
    )
    assert build_encoding(section) == RelativeEncoding(50)
    section.use_temporal_tokens = True  # tokens win over relative timestamps
    assert build_encoding(section) == TemporalTokenEncoding(100)
    section.use_temporal_tokens = section.use_relative_timestamps = False
    assert build_encoding(section) == SecondsEncoding()


def test_parse_stats_counts_and_passes_results_through():
    stats, enc = ParseStats(), SecondsEncoding()
    answers = ["from 1 to 2", "garbage", "", "3 4"]
    results = [stats.record(enc.parse(text, 10.0)) for text in answers]
    assert results == [(1.0, 2.0), None, None, (3.0, 4.0)]
    assert (stats.parsed, stats.unparsed, stats.total, stats.unparsed_rate) == (2, 2, 4, 0.5)
    assert ParseStats().unparsed_rate == 0.0


def test_sinusoidal_rows_formula():
    rows = sinusoidal_rows(3, 4)
    # column 2k: sin(i / 10000^(2k/4)); k = 0 -> sin(i), k = 1 -> sin(i / 100)
    assert rows[2].tolist() == pytest.approx([math.sin(2), math.cos(2), math.sin(0.02), math.cos(0.02)])
    assert sinusoidal_rows(2, 5).shape == (2, 5)  # odd widths drop the last cosine


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory):
    return tiny_checkpoint("qwen3_vl", cache_dir=tmp_path_factory.mktemp("tiny"))


def load(path):
    return AutoProcessor.from_pretrained(path), AutoModelForImageTextToText.from_pretrained(path)


def test_add_temporal_tokens_sinusoidal_on_tiny_qwen3(tiny_qwen3):
    processor, model = load(tiny_qwen3)
    tokenizer = processor.tokenizer
    old_vocab = len(tokenizer)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()

    ids = add_temporal_tokens(processor, model, "sinusoidal", num_tokens=1000)

    assert ids == list(range(old_vocab, old_vocab + 1000))
    assert len(tokenizer) == old_vocab + 1000
    encoded = tokenizer("at <12><345> end", add_special_tokens=False)["input_ids"]
    assert [i for i in encoded if i >= old_vocab] == [ids[12], ids[345]]  # one token each, no splitting
    assert tokenizer.decode([ids[12], ids[345]], skip_special_tokens=True) == "<12><345>"
    for layer, old in ((model.get_input_embeddings(), old_in), (model.get_output_embeddings(), old_out)):
        weight = layer.weight.detach()
        assert weight.shape[0] == old_vocab + 1000
        assert torch.equal(weight[:old_vocab], old)  # existing rows untouched
        new = weight[ids]
        # every new row has the mean norm of the old rows
        assert new.norm(dim=1) == pytest.approx(torch.full((1000,), old.norm(dim=1).mean().item()), rel=1e-4)
        cos = torch.nn.functional.cosine_similarity
        assert cos(new[100:101], new[101:102]) > cos(new[100:101], new[600:601]) + 0.1  # time order kept
    # the model runs on the new ids and predicts over the grown vocabulary
    logits = model(input_ids=torch.tensor([[ids[0], ids[999], encoded[0]]])).logits
    assert logits.shape == (1, 3, old_vocab + 1000)
    assert torch.isfinite(logits).all()
    # a second call adds nothing and keeps the rows
    before = model.get_input_embeddings().weight.detach().clone()
    assert add_temporal_tokens(processor, model, "mean", num_tokens=1000) == ids
    assert torch.equal(model.get_input_embeddings().weight.detach(), before)


def test_add_temporal_tokens_mean_on_tiny_qwen3(tiny_qwen3):
    processor, model = load(tiny_qwen3)
    old_vocab = len(processor.tokenizer)
    old_mean = model.get_input_embeddings().weight[:old_vocab].detach().double().mean(dim=0).float()
    ids = add_temporal_tokens(processor, model, "mean", num_tokens=10)
    assert temporal_token_strings(3) == ["<0>", "<1>", "<2>"]
    assert processor.tokenizer.convert_ids_to_tokens(ids) == temporal_token_strings(10)
    new = model.get_input_embeddings().weight[ids].detach()
    assert torch.allclose(new, old_mean.expand(10, -1), atol=1e-6)


def test_add_temporal_tokens_rejects_unknown_strategy_before_changing_anything(tiny_qwen3):
    processor, model = load(tiny_qwen3)
    vocab = len(processor.tokenizer)
    with pytest.raises(ValueError, match="embedding_init_strategy"):
        add_temporal_tokens(processor, model, "random", num_tokens=4)
    assert len(processor.tokenizer) == vocab == model.get_input_embeddings().weight.shape[0]


def test_growing_the_token_range_initialises_only_the_new_indices(tiny_qwen3):
    processor, model = load(tiny_qwen3)
    first = add_temporal_tokens(processor, model, "mean", num_tokens=5)
    kept = model.get_input_embeddings().weight[first].detach().clone()
    ids = add_temporal_tokens(processor, model, "sinusoidal", num_tokens=8)
    weight = model.get_input_embeddings().weight.detach()
    assert ids[:5] == first and torch.equal(weight[first], kept)  # <0>..<4> keep their rows
    # <5>..<7> get the sinusoid of their own index (5, 6, 7), not of 0, 1, 2
    expected = sinusoidal_rows(8, weight.shape[1])[5:].float()
    got = weight[ids[5:]]
    assert torch.allclose(
        got / got.norm(dim=1, keepdim=True), expected / expected.norm(dim=1, keepdim=True), atol=1e-5
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0:05 to 0:09", (5.0, 9.0)),
        ("from 0:05 to 0:09", (5.0, 9.0)),
        ("The event is 00:00:18 … 00:00:23.", (18.0, 23.0)),
        ("from 01:02:03.5 to 01:02:10", (3723.5, 3730.0)),
        ("1:05-1:30", (65.0, 90.0)),
        ("between 2:00 and 2:07.25", (120.0, 127.25)),
        ("from 0:05 to 9 seconds", (5.0, 9.0)),  # a time and a number of seconds
        ("start: 3.2, end: 7.9", (3.2, 7.9)),  # a label's colon is no clock
        ("from 3.2 to 7.9 seconds", (3.2, 7.9)),
        ("12:00 to 13:30", (720.0, 810.0)),  # mm:ss with two-digit minutes (duration 10000 s)
        # ambiguous: unparseable, never a wrong number
        ("0:5 to 0:9", None),  # one-digit seconds
        ("0:75 to 1:20", None),  # seconds >= 60
        ("1:2:3:4 to 5", None),  # four fields
        ("1:75:00 to 2:00:00", None),  # minutes >= 60
        ("00:00:18,500 to 00:00:23,000", None),  # comma decimals (SRT)
        ("12:30pm to 1:00pm", None),  # a time of day
        ("0:05", None),  # one value
    ],
)
def test_seconds_parser_reads_clock_times(text, expected):
    assert SecondsEncoding().parse(text, 10000.0) == expected


def test_relative_parser_refuses_clock_times():
    assert RelativeEncoding(100).parse("0:05 to 0:09", 10.0) is None
    assert RelativeEncoding(100).parse("from 0.25 to 0.5", 20.0) == (5.0, 10.0)
