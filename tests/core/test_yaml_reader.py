"""The one YAML reader: scientific notation is a float, a key given twice is an error, and every
problem of a config file — tabs, two documents, bytes that are not UTF-8, a tag, a list where one
value belongs — is one line naming the file, line and column (or the key)."""

from __future__ import annotations

import pytest

from vlmrm.core.config import ConfigError
from vlmrm.core.overrides import parse_overrides
from vlmrm.core.yaml_reader import load_yaml, read_yaml
from vlmrm.reward.config import parse_config

BASE = "output_dir: out\nuse_cpu: true\n"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("-1e1", -10.0),
        ("1e-5", 1e-5),
        ("+2E+3", 2000.0),
        (".5e1", 5.0),
        ("1.5", 1.5),
        ("12", 12),
        ("1e", "1e"),
    ],
)
def test_scientific_notation_is_a_float(text, value):
    assert load_yaml(f"x: {text}", "f.yaml") == {"x": value}
    assert parse_overrides(["--x", text]) == [("x", value)]


CASES = [
    ("a key given twice", b"a: 1\nb: 2\na: 3\n", "3:1: key 'a' is given twice (first on line 1)"),
    ("a nested key given twice", b"s:\n  k: 1\n  k: 2\n", "3:3: key 'k' is given twice (first on line 2)"),
    (
        "a tab for indentation",
        b"s:\n\tk: 1\n",
        (
            "2:1: while scanning for the next token: found character '\\t' that cannot start any token; "
            "indent with spaces, YAML does not allow tabs there"
        ),
    ),
    (
        "two documents",
        b"a: 1\n---\nb: 2\n",
        "2:1: expected a single document in the stream: but found another document",
    ),
    (
        "a byte that is not UTF-8",
        b"a: 1\nprompt: caf\xe9\n",
        "2:12: byte 0xe9 is not UTF-8; save the file as UTF-8",
    ),
    (
        "a python tag",
        b"a: !!python/object/apply:os.system [ls]\n",
        "1:4: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
    (
        "an unclosed list",
        b"a: [1, 2\nb: 3\n",
        "2:2: while parsing a flow sequence: expected ',' or ']', but got ':'",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), CASES, ids=[c[0] for c in CASES])
def test_yaml_problem_is_one_line_with_file_line_column(tmp_path, name, content, message):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    assert str(caught.value) == f"{path}:{message}"
    assert "\n" not in str(caught.value)


def test_a_bom_and_merge_keys_are_fine(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"\xef\xbb\xbfbase: &b {x: 1, y: 2}\nmine:\n  <<: *b\n  y: 3\n")
    assert read_yaml(path) == {"base": {"x": 1, "y": 2}, "mine": {"x": 1, "y": 3}}


def test_a_top_level_list_is_refused(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml: top level must be a mapping of key: value, got list"):
        read_yaml(path)


def test_override_value_giving_a_key_twice_is_an_error():
    with pytest.raises(ConfigError, match=r"--lora:1:8: key 'r' is given twice \(first on line 1\)"):
        parse_overrides(["--lora", "{r: 1, r: 2}"])


def test_negative_scientific_score_range_parses(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(BASE + "score_min: -1e1\nscore_max: 1e1\nlearning_rate: 2e-5\n")
    training = parse_config(path).training
    assert (training.score_min, training.score_max, training.learning_rate) == (-10.0, 10.0, 2e-5)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("fps: [1, 2]", "fps: expected float, got a list [1, 2]"),
        ("learning_rate: {a: 1}", "learning_rate: expected float, got a dict {'a': 1}"),
    ],
)
def test_a_collection_where_one_value_belongs_names_the_key(tmp_path, line, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(BASE + line + "\n")
    with pytest.raises(ConfigError) as caught:
        parse_config(path)
    assert str(caught.value) == f"{path}: {message}"
