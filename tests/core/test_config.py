"""The one config loader: the override grammar on flat and nested layouts, the path rule, the error
format (origin, dotted key, did-you-mean) and warmup_ratio converted once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest
import yaml
from transformers import TrainingArguments

from vlmrm.core.config import ConfigError, Layout, load_config, option
from vlmrm.core.overrides import parse_overrides, parse_scalar, resolve_path
from vlmrm.grm.evaluate import parse_grm_eval_config
from vlmrm.grm.sft import load_grm_sft_config
from vlmrm.reward.config import RewardTrainingArguments, parse_config
from vlmrm.vtg.config import load_vtg_task_config

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Knobs:
    name: str = option("a", "A name.", aliases=["old_name"])
    dims: list[str] = option(["x"], "Dimensions.")
    flag: bool = option(True, "On by default.")
    other: bool = option(False, "Off by default.")
    rate: float = option(1.0, "A rate.")
    data: str | None = option(None, "An input file.", path=True)


@dataclass
class Section:
    size: int = option(1, "A size.")
    enabled: bool = option(True, "On by default.")
    files: list[str] = option([], "Input files.", path=True)


@dataclass
class Data:
    root: str | None = option(None, "Root folder.", path=True)
    file: str | None = option(None, "A file under the root.", path=True, under="root")


@dataclass
class Top:
    sec: Section = field(default_factory=Section, metadata={"help": "A section."})
    data: Data | None = option(None, "A data YAML or its mapping.", path=True)
    top: int = option(0, "A top-level key.")
    training: dict = field(default_factory=dict, metadata={"help": "TrainingArguments keys."})


def training_of(sections: Top) -> tuple[type, dict]:
    return TrainingArguments, {"output_dir": "out", "use_cpu": True}


FLAT = Layout((Knobs, TrainingArguments), flat=True)
NESTED = Layout((Top,), training=training_of)


def write(path: Path, values: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values))
    return path


def flat(tmp_path: Path, overrides: list[str], **values):
    knobs, args = load_config(FLAT, write(tmp_path / "flat.yaml", {"use_cpu": True, **values}), overrides)
    return knobs, args


def nested(tmp_path: Path, overrides: list[str], **values):
    return load_config(NESTED, write(tmp_path / "nested.yaml", values), overrides)


# ---- grammar --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tokens, pairs",
    [
        (["--k", "v"], [("k", "v")]),
        (["--k=v"], [("k", "v")]),
        (["--n", "3", "--x", "-1"], [("n", 3), ("x", -1)]),
        (["--lr", "5e-6"], [("lr", 5e-6)]),  # YAML 1.2 floats: scientific notation without a dot
        (["--flag"], [("flag", True)]),
        (["--flag", "--n", "3"], [("flag", True), ("n", 3)]),
        (["--no_flag"], [("no_flag", True)]),
        (["--dims", "VQ", "MQ"], [("dims", ["VQ", "MQ"])]),
        (["--dims", "[VQ, MQ]"], [("dims", ["VQ", "MQ"])]),
        (["--dims=[VQ]"], [("dims", ["VQ"])]),
        (["--a.b", "1", "--a.c=x"], [("a.b", 1), ("a.c", "x")]),
        (["--dash-key", "1"], [("dash_key", 1)]),
        (["--x", "true", "--y", "False", "--z", "null"], [("x", True), ("y", False), ("z", None)]),
        (["--save_strategy", "no"], [("save_strategy", "no")]),  # YAML 1.1 would say False
        (["--run_name", "a: b"], [("run_name", "a: b")]),  # not written as {...}: text
        (["--glob", "*"], [("glob", "*")]),  # not YAML at all: text
        (["--x=--y"], [("x", "--y")]),
    ],
)
def test_override_grammar(tokens, pairs):
    assert parse_overrides(tokens) == pairs


@pytest.mark.parametrize("tokens", [["x"], ["--"], ["-k", "v"]])
def test_override_grammar_rejects_tokens_that_are_not_keys(tmp_path, tokens):
    with pytest.raises(ConfigError, match=r"^command line: unexpected argument"):
        flat(tmp_path, tokens)


def test_scalars_are_yaml_except_yes_no_and_bare_collections():
    assert (parse_scalar("1.5"), parse_scalar("{a: 1}"), parse_scalar("on")) == (1.5, {"a": 1}, "on")
    assert parse_scalar("- a") == "- a"


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (["--rate", "5e-6"], {"rate": 5e-6}),
        (["--rate=0.5"], {"rate": 0.5}),
        (["--dims", "VQ", "MQ"], {"dims": ["VQ", "MQ"]}),
        (["--dims", "[VQ, MQ]"], {"dims": ["VQ", "MQ"]}),
        (["--dims", "VQ"], {"dims": ["VQ"]}),
        (["--no_flag"], {"flag": False}),
        (["--flag", "false"], {"flag": False}),
        (["--other"], {"other": True}),
        (["--old_name", "b"], {"name": "b"}),  # an alias
        (["--learning_rate", "5e-6"], {"learning_rate": 5e-6}),
        (["--save_strategy", "no"], {"save_strategy": "no"}),
        (["--warmup_ratio", "0.1"], {"warmup_steps": 0.1}),
        (["--use_cpu", "true", "--logging_steps", "3", "--rate", "3"], {"logging_steps": 3, "rate": 3.0}),
    ],
)
def test_grammar_on_a_flat_config(tmp_path, tokens, expected):
    knobs, args = flat(tmp_path, tokens, rate=2.0, dims=["a", "b", "c"])
    for key, value in expected.items():
        got = getattr(knobs if hasattr(knobs, key) else args, key)
        assert (got.value if hasattr(got, "value") else got) == value, key


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (["--top", "3"], {"top": 3}),
        (["--sec.size=4"], {"sec.size": 4}),
        (["--sec.size", "4"], {"sec.size": 4}),
        (["--sec.no_enabled"], {"sec.enabled": False}),
        (["--sec.files", "a", "b"], {"sec.files": ["a", "b"]}),
        (["--sec.files", "a"], {"sec.files": ["a"]}),
        (["--data.file", "x.jsonl"], {"data.file": "x.jsonl"}),
        (["--learning_rate", "5e-6"], {"training.learning_rate": 5e-6}),  # flat key -> training
        (["--training.seed", "3"], {"training.seed": 3}),
        (["--warmup_ratio=0.1"], {"training.warmup_steps": 0.1}),
        (["--no_use_cpu"], {"training.use_cpu": False}),
        (["--use_cpu", "true", "--logging_steps", "3"], {"training.logging_steps": 3}),
    ],
)
def test_grammar_on_a_nested_config(tmp_path, tokens, expected):
    sections, args = nested(tmp_path, tokens, sec={"size": 2}, training={"seed": 1})
    for dotted, value in expected.items():
        head, _, rest = dotted.partition(".")
        target = args if head == "training" else sections
        for part in (rest if head == "training" else dotted).split("."):
            target = getattr(target, part)
        assert target == value, dotted


@pytest.mark.parametrize(
    "config, layout_loader",
    [
        ("quickstart_cpu.yaml", lambda p, o: parse_config(p, o).training),
        ("vtg_sft_tiny.yaml", lambda p, o: load_vtg_task_config(p, o).training),
        ("grm_sft_tiny.yaml", lambda p, o: load_grm_sft_config(p, o).training),
    ],
)
def test_every_task_takes_the_launcher_tokens_then_the_users(config, layout_loader, monkeypatch):
    """What run_distributed.sh passes on CPU (``--ddp_backend gloo`` needs the process group torchrun
    starts: left out here), then a user's overrides, for each training task."""
    monkeypatch.chdir(ROOT)
    tokens = ["--use_cpu", "true", "--learning_rate", "5e-6", "--seed=7", "--logging_steps", "3"]
    args = layout_loader(f"training_configs/{config}", tokens)
    assert (args.use_cpu, args.learning_rate, args.seed, args.logging_steps) == (True, 5e-6, 7, 3)


def test_overrides_get_the_checks_the_yaml_gets(tmp_path):
    with pytest.raises(ConfigError, match=r"^command line: sec.size: expected int, got str 'big'"):
        nested(tmp_path, ["--sec.size", "big"])
    with pytest.raises(ConfigError, match=r"^command line: argument --rate: invalid float value: 'fast'"):
        flat(tmp_path, ["--rate", "fast"])
    with pytest.raises(ConfigError, match=r"^command line: --no_flag: takes no value"):
        flat(tmp_path, ["--no_flag", "yes"])
    with pytest.raises(ConfigError, match=r"^command line: --sec.size.x: 'sec.size' is not a section"):
        nested(tmp_path, ["--sec.size", "1", "--sec.size.x", "2"])


# ---- path rule ------------------------------------------------------------------------------


def test_path_rule(tmp_path, monkeypatch):
    work, folder = tmp_path / "work", tmp_path / "cfg"
    for path in (work / "both.txt", folder / "both.txt", folder / "beside.txt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    monkeypatch.chdir(work)
    assert resolve_path("both.txt", folder) == "both.txt"  # the working directory wins
    assert resolve_path("beside.txt", folder) == str(folder / "beside.txt")  # the config's folder
    assert resolve_path("Org/model-7B", folder) == "Org/model-7B"  # a hub id: nowhere, as written
    assert resolve_path("outputs/run", folder) == "outputs/run"  # not created yet: as written
    assert resolve_path(str(folder / "beside.txt"), None) == str(folder / "beside.txt")


def test_yaml_paths_follow_the_rule_and_command_line_paths_stay(tmp_path, monkeypatch):
    folder = tmp_path / "cfg"
    (folder / "d").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "d/f.jsonl"):
        (folder / name).write_text("x")
    write(folder / "data.yaml", {"root": "d", "file": "f.jsonl"})
    config = write(folder / "nested.yaml", {"sec": {"files": ["a.txt", "hub/id"]}, "data": "data.yaml"})
    monkeypatch.chdir(tmp_path)
    sections, _ = load_config(NESTED, config)
    assert sections.sec.files == [str(folder / "a.txt"), "hub/id"]
    assert (sections.data.root, sections.data.file) == (str(folder / "d"), str(folder / "d/f.jsonl"))
    sections, _ = load_config(NESTED, config, ["--sec.files", "b.txt", "--data.file", "f.jsonl"])
    assert sections.sec.files == ["b.txt"]  # typed here: from the working directory, not moved
    assert sections.data.file == "f.jsonl"
    knobs, _ = load_config(FLAT, write(folder / "flat.yaml", {"data": "a.txt", "use_cpu": True}))
    assert knobs.data == str(folder / "a.txt")


def test_every_task_marks_its_input_paths(tmp_path, monkeypatch):
    """The reward model, GRM SFT and GRM eval resolve their files next to the config; hub ids stay."""
    folder = tmp_path / "cfg"
    for name in ("train.csv", "sft.json", "held.json", "instruction.txt", "ds.json"):
        write(folder / name, {"placeholder": True})
    (folder / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 0}}))
    monkeypatch.chdir(tmp_path)
    reward = parse_config(
        write(folder / "rm.yaml", {"model_name_or_path": "Org/m", "meta_data": "train.csv", "use_cpu": True})
    )
    assert (reward.model.model_name_or_path, reward.data.meta_data) == ("Org/m", str(folder / "train.csv"))
    grm = load_grm_sft_config(
        write(
            folder / "grm.yaml",
            {
                "model": {"name_or_path": "Org/m"},
                "data": [{"path": "sft.json"}],
                "training": {"use_cpu": True, "deepspeed": "ds.json"},
            },
        )
    )
    assert grm.sections.data[0].path == str(folder / "sft.json")
    assert grm.training.deepspeed == str(folder / "ds.json")
    values = {"model_dir": "Org/m", "data_path": "hpdv3:held.json", "task_instruction": "@instruction.txt"}
    grm_eval = parse_grm_eval_config(write(folder / "eval.yaml", values))
    assert grm_eval.data_path == f"hpdv3:{folder / 'held.json'}"
    assert grm_eval.task_instruction == f"@{folder / 'instruction.txt'}"
    assert grm_eval.model_dir == "Org/m"


# ---- errors ---------------------------------------------------------------------------------


def test_errors_name_the_origin_the_dotted_key_and_the_closest_key(tmp_path):
    def message(loader, overrides, **values) -> str:
        with pytest.raises(ConfigError) as err:
            loader(tmp_path, overrides, **values)
        return str(err.value)

    flat_file, nested_file = tmp_path / "flat.yaml", tmp_path / "nested.yaml"
    assert message(flat, [], ratee=1) == f"{flat_file}: unknown key 'ratee'; did you mean 'rate'?"
    assert message(flat, ["--ratee", "1"]) == "command line: unknown key 'ratee'; did you mean 'rate'?"
    assert message(flat, [], learnin_rate=1).endswith(
        "unknown key 'learnin_rate'; did you mean 'learning_rate'?"
    )
    assert message(nested, [], sec={"szie": 1}) == (
        f"{nested_file}: unknown key 'sec.szie'; did you mean 'size'? (valid keys in sec: size, enabled, files)"
    )
    assert message(nested, ["--sec.szie", "1"]).startswith(
        "command line: unknown key 'sec.szie'; did you mean"
    )
    training = "training: unknown key 'training.learnin_rate'; did you mean 'learning_rate'?"
    assert message(nested, [], training={"learnin_rate": 1}) == f"{nested_file}: {training}"
    assert message(nested, ["--learnin_rate", "1"]) == f"command line: {training}"
    assert message(nested, ["--training.learnin_rate", "1"]) == f"command line: {training}"


def test_an_included_file_is_named_in_its_errors(tmp_path):
    included = write(tmp_path / "data.yaml", {"fiel": "x"})
    config = write(tmp_path / "nested.yaml", {"data": "data.yaml"})
    with pytest.raises(ConfigError) as err:
        load_config(NESTED, config)
    assert str(err.value).startswith(f"{included}: unknown key 'data.fiel'; did you mean 'file'?")
    with pytest.raises(ConfigError, match=r"^.*nested.yaml: config file not found: .*missing.yaml"):
        load_config(NESTED, write(tmp_path / "nested.yaml", {"data": "missing.yaml"}))


# ---- warmup_ratio ---------------------------------------------------------------------------


def test_warmup_ratio_is_converted_once_in_the_loader(tmp_path):
    assert "warmup_ratio" not in {f.name for f in fields(RewardTrainingArguments)}
    assert parse_config(values={"warmup_ratio": 0.1, "use_cpu": True}).training.warmup_steps == 0.1
    assert (
        parse_config(values={"use_cpu": True}, overrides=["--warmup_ratio", "0.2"]).training.warmup_steps
        == 0.2
    )
    _, args = nested(tmp_path, [], training={"warmup_ratio": 0.05})
    assert args.warmup_steps == 0.05
    _, args = nested(tmp_path, ["--warmup_steps", "10"], training={"warmup_ratio": 0.05})
    assert args.warmup_steps == 10  # the command line wins over the file
    with pytest.raises(ConfigError, match=r"training.warmup_ratio: must be in \[0, 1\), got 1.5"):
        nested(tmp_path, [], training={"warmup_ratio": 1.5})
    with pytest.raises(ConfigError, match="warmup_ratio: give warmup_ratio or warmup_steps, not both"):
        parse_config(values={"warmup_ratio": 0.1, "warmup_steps": 3, "use_cpu": True})
