"""Configs and data never execute code, and ``restrict_paths`` keeps media paths inside the data folder."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmrm.core.problems import DataValidationError
from vlmrm.pairs.image_pairs import parse_image_pair_jsonl
from vlmrm.pairs.video_pairs import parse_video_pair_csv
from vlmrm.reward.config import parse_config
from vlmrm.reward.validate import validate_run_data

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "vlmrm").rglob("*.py"), *ROOT.glob("*.py")])
UNSAFE = {
    "yaml.load without SafeLoader": re.compile(r"yaml\.(load|load_all|unsafe_load)\((?![^)]*SafeLoader)"),
    "eval": re.compile(r"(?<![\w.])eval\("),
    "exec": re.compile(r"(?<![\w.])exec\("),
    "pickle": re.compile(r"\b(c?pickle|dill|joblib)\.loads?\("),
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"),
}


def unsafe_calls(text: str) -> list[str]:
    return [name for name, pattern in UNSAFE.items() if pattern.search(text)]


def test_the_grep_finds_each_unsafe_call():
    assert unsafe_calls("cfg = yaml.load(fh)") == ["yaml.load without SafeLoader"]
    assert unsafe_calls("cfg = yaml.load(fh, Loader=yaml.SafeLoader)") == []
    assert unsafe_calls("yaml.safe_load(fh)") == []
    assert unsafe_calls("x = eval(text)") == ["eval"] and unsafe_calls("ast.literal_eval(text)") == []
    assert unsafe_calls("exec(code)") == ["exec"]
    assert unsafe_calls("pickle.load(fh)") == ["pickle"]
    assert unsafe_calls("torch.load(path)") == ["torch.load without weights_only=True"]
    assert unsafe_calls("torch.load(path, map_location='cpu', weights_only=True)") == []


def test_package_and_scripts_never_execute_data():
    assert len(SOURCES) > 20  # the package, train_rm.py, eval_rm.py
    found = {str(path.relative_to(ROOT)): unsafe_calls(path.read_text()) for path in SOURCES}
    assert {path: calls for path, calls in found.items() if calls} == {}


@pytest.fixture
def outside_layout(tmp_path, make_video):
    """data/ holds the CSV, a video and a symlink to a video outside it; outside/ is next to it."""
    make_video("data/videos/in.mp4")
    make_video("outside/out.mp4")
    (tmp_path / "data" / "videos" / "link.mp4").symlink_to(tmp_path / "outside" / "out.mp4")
    return tmp_path


def test_video_paths_escaping_the_data_dir_are_problems(outside_layout, make_csv):
    tmp = outside_layout
    rows = [
        {"path_A": "videos/in.mp4", "path_B": "videos/in.mp4"},  # line 2: inside
        {"path_A": "../outside/out.mp4", "path_B": "videos/in.mp4"},  # line 3: ".."
        {"path_A": "videos/in.mp4", "path_B": "videos/link.mp4"},  # line 4: symlink
        {"path_A": str(tmp / "outside" / "out.mp4"), "path_B": "videos/../videos/in.mp4"},  # line 5: absolute
    ]
    rows = [{**r, "prompt": "p", "VQ": "A", "MQ": "B", "TA": "same"} for r in rows]
    csv_path = make_csv(rows, name="data/pairs.csv")
    loose = parse_video_pair_csv(csv_path, ["VQ"])
    assert loose.problems == [] and len(loose.pairs) == 4
    table = parse_video_pair_csv(csv_path, ["VQ"], restrict_paths=True)
    outside, data = tmp / "outside" / "out.mp4", tmp / "data"
    assert [str(p) for p in table.problems] == [
        f"error: {csv_path}:3 [path_A]: {data}/../outside/out.mp4 resolves to {outside}, outside {data}",
        f"error: {csv_path}:4 [path_B]: {data}/videos/link.mp4 resolves to {outside}, outside {data}",
        f"error: {csv_path}:5 [path_A]: {outside} resolves to {outside}, outside {data}",
    ]
    assert [pair.line for pair in table.pairs] == [2]


def test_run_validation_reports_escaping_paths_before_training(outside_layout, make_csv):
    row = {"path_A": "../outside/out.mp4", "path_B": "videos/in.mp4", "prompt": "p"}
    csv_path = make_csv([{**row, "VQ": "A", "MQ": "B", "TA": "same"}], name="data/pairs.csv")
    values = {"output_dir": str(outside_layout / "o"), "meta_data": str(csv_path), "video_backend": "pyav"}
    assert validate_run_data(parse_config(values=values))[0].problems == []
    with pytest.raises(DataValidationError, match=r"pairs.csv:2 \[path_A\]: .* outside"):
        validate_run_data(parse_config(values={**values, "restrict_paths": True}))
    # data_dir is the root when set: the path now resolves to data/outside/out.mp4, outside data/videos
    values["data_dir"] = str(outside_layout / "data" / "videos")
    with pytest.raises(DataValidationError, match=r"\[path_A\]"):
        validate_run_data(parse_config(values={**values, "restrict_paths": True}))


def test_image_paths_escaping_the_image_dir_are_problems(tmp_path):
    for folder in ("data/img", "outside"):
        (tmp_path / folder).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / folder / "x.png")
    lines = [
        {"prompt": "p", "image_A": "img/x.png", "image_B": "img/x.png", "label": "A"},  # line 1
        {"prompt": "p", "image_A": "img/x.png", "image_B": "../outside/x.png", "label": "A"},  # line 2
        {"prompt": "p", "chosen": "a", "rejected": "b", "images": [str(tmp_path / "outside/x.png")]},  # 3
    ]
    path = tmp_path / "data" / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert parse_image_pair_jsonl(path).problems == []
    table = parse_image_pair_jsonl(path, restrict_paths=True)
    assert [(p.line, p.field, p.kind) for p in table.problems] == [
        (2, "image_B", "path_escape"),
        (3, "images[0]", "path_escape"),
    ]
    assert [pair.line for pair in table.pairs] == [1]
    # image_dir is the root when set: with outside/ as image_dir, every path above resolves inside it
    table = parse_image_pair_jsonl(path, image_dir=tmp_path / "outside", restrict_paths=True)
    assert table.problems == [] and len(table.pairs) == 3
