"""A hostile corpus for the data readers: files real data sets contain (quoted newlines, blank
lines, a BOM, Windows line ends, repeated columns and keys, bytes that are not UTF-8 anywhere,
fractional or infinite frame counts), each generated here and checked for the exact
``file:line [column]: message`` the reader reports — never a shifted line, a silent drop, a
truncated number or a traceback. Parsing only: no media is opened.

Each case is ``(name, file name, bytes, expected problems)``; a problem is written as
``Problem.__str__`` prints it, with ``{file}`` for the data file's path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlmrm.core.problems import DataValidationError
from vlmrm.grm.sft_data import load_sft_file
from vlmrm.pairs.image_pairs import parse_image_pair_jsonl
from vlmrm.pairs.video_pairs import parse_video_pair_csv
from vlmrm.vtg.annotations import parse_vtg_jsonl

REPO = Path(__file__).resolve().parents[2]
HEADER = b"path_A,path_B,prompt,VQ"
UNKNOWN_X = "unknown label 'X' (valid: A, B, same; empty or 'invalid' = missing)"
NOT_UTF8 = "not valid UTF-8 (byte 0xff at byte {at} of the line); save the file as UTF-8"
IMAGE_LINE = {"prompt": "p", "image_A": "a.png", "image_B": "b.png", "label": "A"}
VTG_LINE = {"video": "a.mp4", "duration": 10, "timestamp": [1, 2], "sentence": "s"}


def csv_bytes(*lines: bytes, end: bytes = b"\n") -> bytes:
    return end.join(lines) + end


def json_line(record: dict) -> bytes:
    return json.dumps(record).encode()


CSV_CASES = [
    (
        "label after a quoted two-line prompt and a blank line",
        csv_bytes(HEADER, b'a.mp4,b.mp4,"two', b'lines",A', b"", b"a.mp4,b.mp4,p,X"),
        [f"error: {{file}}:5 [VQ]: {UNKNOWN_X}"],
    ),
    (
        "BOM and Windows line ends",
        csv_bytes(b"\xef\xbb\xbf" + HEADER, b"a.mp4,b.mp4,p,A", b"a.mp4,b.mp4,p,X", end=b"\r\n"),
        [f"error: {{file}}:3 [VQ]: {UNKNOWN_X}"],
    ),
    (
        "blank lines before the header",
        csv_bytes(b"", b"", b"path_A,path_B,prompt", b"a.mp4,b.mp4,p"),
        ["error: {file}:3 [VQ]: missing column (header has: path_A, path_B, prompt)"],
    ),
    (
        "a column named twice",
        csv_bytes(HEADER + b",VQ", b"a.mp4,b.mp4,p,A,B"),
        ["error: {file}:1 [VQ]: column 'VQ' is given twice (columns 4 and 5)"],
    ),
    (
        "a byte that is not UTF-8 inside a quoted multi-line prompt",
        csv_bytes(HEADER, b'a.mp4,b.mp4,"one', b'tw\xffo",A', b"a.mp4,b.mp4,p,X"),
        [
            "error: {file}:2 [prompt]: line 3: " + NOT_UTF8.format(at=3),
            f"error: {{file}}:4 [VQ]: {UNKNOWN_X}",
        ],
    ),
    (
        "a byte that is not UTF-8 in the header",
        csv_bytes(b"path_A,path_B,pr\xffompt,VQ", b"a.mp4,b.mp4,p,A"),
        ["error: {file}:1: header " + NOT_UTF8.format(at=17)],
    ),
    (
        "a fractional declared frame count",
        csv_bytes(HEADER + b",num_frames_A", b"a.mp4,b.mp4,p,A,2.7"),
        ["error: {file}:2 [num_frames_A]: must be a whole number of frames, got '2.7'"],
    ),
    (
        "an infinite declared frame count and a NaN fps",
        csv_bytes(HEADER + b",num_frames_A,fps_B", b"a.mp4,b.mp4,p,A,inf,nan"),
        [
            "error: {file}:2 [num_frames_A]: not a finite number > 0: 'inf'",
            "error: {file}:2 [fps_B]: not a finite number > 0: 'nan'",
        ],
    ),
    (
        "a row with one field too many after a multi-line field",
        csv_bytes(HEADER, b'a.mp4,b.mp4,"x', b'y",A', b"a.mp4,b.mp4,p,A,extra"),
        ["error: {file}:4: 5 fields, the header has 4 (a stray comma or quote?)"],
    ),
    (
        "a lower-case or padded label is not read as another",
        csv_bytes(HEADER, b"a.mp4,b.mp4,p,a", b"a.mp4,b.mp4,p,Ab"),
        [
            "error: {file}:2 [VQ]: unknown label 'a' (valid: A, B, same; empty or 'invalid' = missing)",
            "error: {file}:3 [VQ]: unknown label 'Ab' (valid: A, B, same; empty or 'invalid' = missing)",
        ],
    ),
    ("an empty file", b"", ["error: {file}: cannot parse CSV: the file is empty"]),
]

JSONL_CASES = [
    (
        "image pairs: a key given twice",
        json_line(IMAGE_LINE) + b"\n" + b'{"prompt": "p", "prompt": "q", "label": "A"}\n',
        ["error: {file}:2 [prompt]: key 'prompt' is given twice in one object"],
    ),
    (
        "image pairs: a nested key given twice",
        b'{"prompt": "p", "images": ["a.png", "b.png"], "label": "A", "id": {"k": 1, "k": 2}}\n',
        ["error: {file}:1 [k]: key 'k' is given twice in one object"],
    ),
]

VTG_CASES = [
    (
        "VTG: a line that is not UTF-8",
        json_line(VTG_LINE) + b'\n{"video": "a.mp4", "sentence": "caf\xff"}\n',
        ["error: {file}:2: " + NOT_UTF8.format(at=36)],
    ),
    (
        "VTG: a key given twice",
        json_line(VTG_LINE) + b"\n" + json_line(VTG_LINE)[:-1] + b', "duration": 3}\n',
        ["error: {file}:2 [duration]: key 'duration' is given twice in one object"],
    ),
    ("VTG: a BOM before the first line", b"\xef\xbb\xbf" + json_line(VTG_LINE) + b"\n", []),
]


@pytest.mark.parametrize(("name", "content", "expected"), CSV_CASES, ids=[c[0] for c in CSV_CASES])
def test_csv_problem_named_at_its_line(tmp_path, name, content, expected):
    path = tmp_path / "pairs.csv"
    path.write_bytes(content)
    table = parse_video_pair_csv(path, ["VQ"])
    assert [str(p) for p in table.problems] == [e.format(file=path) for e in expected]


def test_csv_lines_of_the_pairs_kept_are_the_files(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(csv_bytes(HEADER, b"", b'a.mp4,b.mp4,"1', b"2", b'3",A', b"", b"", b"c.mp4,d.mp4,q,B"))
    table = parse_video_pair_csv(path, ["VQ"])
    assert [(pair.line, pair.prompt, pair.labels) for pair in table.pairs] == [
        (3, "1\n2\n3", (1,)),
        (8, "q", (-1,)),
    ]


JSON_LINE_CASES = [(parse_image_pair_jsonl, *case) for case in JSONL_CASES] + [
    (parse_vtg_jsonl, *case) for case in VTG_CASES
]


@pytest.mark.parametrize(
    ("parse", "name", "content", "expected"), JSON_LINE_CASES, ids=[c[1] for c in JSON_LINE_CASES]
)
def test_jsonl_problem_named_at_its_line(tmp_path, parse, name, content, expected):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    assert [str(p) for p in parse(path).problems] == [e.format(file=path) for e in expected]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[{"conversations": []}]\xff', "invalid start byte"),
        (b'[{"a": 1, "a": 2}]', "key 'a' is given twice"),
    ],
)
def test_grm_sft_file_problem_is_a_validation_error(tmp_path, content, message):
    path = tmp_path / "sft.json"
    path.write_bytes(content)
    with pytest.raises(DataValidationError, match=message):
        load_sft_file(path)


def test_validator_never_prints_a_traceback_on_the_corpus(tmp_path):
    """One process over every CSV and image-JSONL case: problems listed, exit 1, no traceback."""
    files = []
    for index, (_, content, _) in enumerate(CSV_CASES + JSONL_CASES):
        suffix = ".csv" if index < len(CSV_CASES) else ".jsonl"
        path = tmp_path / f"case{index}{suffix}"
        path.write_bytes(content)
        files += ["--file", str(path)]
    proc = subprocess.run(
        [sys.executable, "-m", "vlmrm.data.validate", *files, "--eval_dim", "VQ", "--video_backend", "pyav"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "case0.csv:5 [VQ]: unknown label 'X'" in proc.stderr
