"""Fuzzed CSV and JSONL data: the readers return a table (problems listed in it) or raise
``DataValidationError``, never any other exception. Parsing only: no media is opened."""

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlmrm.core.problems import DataValidationError, Problem
from vlmrm.pairs.image_pairs import SCHEMAS, ImagePairTable, parse_image_pair_jsonl
from vlmrm.pairs.video_pairs import (
    DECLARED_COLUMNS,
    REQUIRED_COLUMNS,
    VideoPairTable,
    load_video_pairs,
    parse_video_pair_csv,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIMS = ["VQ", "MQ", "TA"]
CSV_COLUMNS = [*REQUIRED_COLUMNS, *DIMS, *DECLARED_COLUMNS["A"], *DECLARED_COLUMNS["B"]]
JSON_KEYS = [
    "prompt", "query", "chosen", "rejected", "images", "image", "response", "human_ranking",
    "image_A", "image_B", "label", "id",
]  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
csv_cell = st.one_of(
    st.sampled_from(["A", "B", "same", "", "8", "-1", "nan", "x.mp4", "../x.mp4", "/abs/x.mp4"]),
    st.text(max_size=12),
)


FOLDER = Path(tempfile.mkdtemp(prefix="vlmrm_fuzz_"))
"""One folder for every example (a hypothesis test cannot take pytest's per-test tmp_path)."""


def write(data: bytes, suffix: str) -> Path:
    path = FOLDER / f"data{suffix}"
    path.write_bytes(data)
    return path


def parse_csv_or_validation_error(path: Path, restrict_paths: bool = False) -> VideoPairTable | None:
    table = parse_video_pair_csv(path, DIMS, restrict_paths=restrict_paths)
    assert isinstance(table, VideoPairTable)
    assert all(isinstance(p, Problem) and p.file == str(path) for p in table.problems)
    assert len(table.pairs) <= table.total_rows
    try:
        load_video_pairs(path, DIMS)
    except DataValidationError as err:
        assert err.problems
    return table


@FUZZ
@given(st.binary(max_size=400))
def test_csv_random_bytes(data):
    parse_csv_or_validation_error(write(data, ".csv"))


@FUZZ
@given(st.binary(max_size=200))
def test_csv_random_bytes_after_a_valid_header(data):
    parse_csv_or_validation_error(write(",".join(CSV_COLUMNS).encode() + b"\n" + data, ".csv"))


@FUZZ
@given(
    st.lists(st.sampled_from(CSV_COLUMNS), min_size=1, max_size=12),
    st.lists(st.lists(csv_cell, max_size=12), max_size=6),
    st.booleans(),
)
def test_csv_random_rows(header, rows, restrict_paths):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    table = parse_csv_or_validation_error(write(buffer.getvalue().encode(), ".csv"), restrict_paths)
    if set(CSV_COLUMNS) <= set(header) and not table.problems:
        assert len(table.pairs) == len(rows)


def parse_jsonl(data: bytes, data_format: str = "auto", restrict_paths: bool = False) -> ImagePairTable:
    path = write(data, ".jsonl")
    table = parse_image_pair_jsonl(path, data_format=data_format, restrict_paths=restrict_paths)
    assert isinstance(table, ImagePairTable)
    assert all(isinstance(p, Problem) and p.line is not None for p in table.problems)
    # a line is a pair or has problems: lines = pairs + distinct lines with problems
    assert table.total_lines == len(table.pairs) + len({p.line for p in table.problems})
    return table


@FUZZ
@given(st.binary(max_size=400))
def test_jsonl_random_bytes(data):
    parse_jsonl(data)


@FUZZ
@given(
    st.lists(st.dictionaries(st.sampled_from(JSON_KEYS), json_values, max_size=8), min_size=1, max_size=5),
    st.sampled_from(["auto", *SCHEMAS]),
    st.booleans(),
)
def test_jsonl_random_records(records, data_format, restrict_paths):
    lines = "\n".join(json.dumps(record) for record in records).encode()
    parse_jsonl(lines, data_format, restrict_paths)


@FUZZ
@given(st.lists(json_values, min_size=1, max_size=5))
def test_jsonl_random_json_values(values):
    parse_jsonl("\n".join(json.dumps(value) for value in values).encode())
