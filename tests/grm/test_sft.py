"""GRM SFT (``task: grm_sft``) and GRM evaluation (``task: grm``): labels on the gpt turns only
(single and multi-turn, images and videos), the max_length error, the source mix, and a 2-step run
on the tiny qwen2_vl from converted synthetic pairs, then ``eval_rm.py``'s ``task: grm`` on it."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoProcessor

from vlmrm.cli.tasks import run_eval_task, run_train_task
from vlmrm.core.config import ConfigError
from vlmrm.core.problems import DataValidationError
from vlmrm.grm.convert import convert_file
from vlmrm.grm.records import FilteredSample, append_filtered_jsonl
from vlmrm.grm.sft import load_grm_sft_config
from vlmrm.grm.sft_data import (
    GRMSFTCollator,
    GRMSFTDataset,
    MediaLimits,
    epoch_order,
    load_sft_file,
    mix_counts,
)
from vlmrm.testing.tiny import tiny_checkpoint
from vlmrm.training.sft import IGNORE_INDEX

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "training_configs" / "grm_sft_tiny.yaml"
IMAGE_SIZE = 56
NUM_PAIRS = 6
BRIGHT, DARK = (230, 230, 230), (20, 20, 20)


def write_image_pairs(root: Path, count: int = NUM_PAIRS) -> list[tuple[Path, Path]]:
    """Pair i: a bright and a dark square; the bright one is the better image (decidable from pixels)."""
    root.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(count):
        better, worse = root / f"p{i}_better.png", root / f"p{i}_worse.png"
        Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BRIGHT).save(better)
        Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), DARK).save(worse)
        pairs.append((better, worse))
    return pairs


def kept_sample(i: int, better: Path, worse: Path) -> FilteredSample:
    """A kept rejection-sampling record; odd pairs were shown swapped (better second)."""
    order = (2, 1) if i % 2 else (1, 2)
    shown = (worse, better) if i % 2 else (better, worse)
    winner = 2 if i % 2 else 1
    text = f"<think>\nImage {winner} is brighter.\n</think>\n<answer>Image {winner} is better</answer>"
    return FilteredSample(
        sample_id=f"s{i}",
        source="hpdv3",
        media="image",
        prompt=f"a bright square {i}",
        instruction=f"Which image better matches 'a bright square {i}'?",
        items_shown=(str(shown[0]), str(shown[1])),
        shown_order=order,
        ground_truth=1,
        generated_text=text,
        predicted=1,
        reasoning=f"Image {winner} is brighter.",
    )


@pytest.fixture
def sft_file(tmp_path) -> Path:
    """Synthetic pairs -> filtered.jsonl -> SFT JSON through the real converter."""
    pairs = write_image_pairs(tmp_path / "images")
    append_filtered_jsonl(tmp_path / "filtered.jsonl", [kept_sample(i, *p) for i, p in enumerate(pairs)])
    convert_file(tmp_path / "filtered.jsonl", tmp_path / "sft.json")
    return tmp_path / "sft.json"


@pytest.fixture
def processor(tiny_cache):
    return AutoProcessor.from_pretrained(tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache))


def dataset(paths, processor, weights=None, seed=0) -> GRMSFTDataset:
    sources = [load_sft_file(p) for p in paths]
    limits = MediaLimits(video_fps=2.0, video_backend="pyav")
    return GRMSFTDataset(sources, weights or [1.0] * len(sources), limits, 28, seed)


def target_texts(processor, batch, row: int) -> list[str]:
    """The decoded runs of consecutive target tokens of one row."""
    labels = batch["labels"][row]
    runs, current = [], []
    for token in labels.tolist():
        if token == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(token)
    if current:
        runs.append(current)
    return [processor.tokenizer.decode(run) for run in runs]


def test_labels_cover_exactly_the_gpt_turn(sft_file, processor):
    data = dataset([sft_file], processor)
    records = json.loads(sft_file.read_text())
    batch = GRMSFTCollator(processor)([data[0], data[1]])
    for row in range(2):
        gpt = records[row]["conversations"][1]["value"]
        assert target_texts(processor, batch, row) == [gpt + "<|im_end|>"]
        real = batch["attention_mask"][row].bool()
        prompt = processor.tokenizer.decode(
            batch["input_ids"][row][real][batch["labels"][row][real] == IGNORE_INDEX]
        )
        assert records[row]["conversations"][0]["value"] in prompt and "<|image_pad|>" in prompt
    assert batch["image_grid_thw"].shape == (4, 3)  # two images per row, in shown order
    image_tokens = (batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum()
    merge = processor.image_processor.merge_size**2
    assert int(image_tokens) == int(batch["image_grid_thw"].prod(dim=1).sum()) // merge
    assert (batch["mm_token_type_ids"] == 1).sum() == image_tokens


def test_every_gpt_turn_of_a_two_turn_conversation_is_a_target(tmp_path, processor):
    (better, worse), *_ = write_image_pairs(tmp_path, 1)
    turns = [
        {"from": "human", "value": "Which image is better?"},
        {"from": "gpt", "value": "<answer>Image 1 is better</answer>"},
        {"from": "human", "value": "Why?"},
        {"from": "gpt", "value": "<think>\nIt is brighter.\n</think>"},
    ]
    path = tmp_path / "two.json"
    path.write_text(json.dumps([{"conversations": turns, "images": [better.name, worse.name]}]))
    data = dataset([path], processor)
    batch = GRMSFTCollator(processor)([data[0]])
    assert target_texts(processor, batch, 0) == [
        turns[1]["value"] + "<|im_end|>",
        turns[3]["value"] + "<|im_end|>",
    ]
    masked = processor.tokenizer.decode(batch["input_ids"][0][batch["labels"][0] == IGNORE_INDEX])
    assert "Which image is better?" in masked and "Why?" in masked and "assistant" in masked
    full = processor.apply_chat_template(
        [
            {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": t}]}
            if i == 0
            else {"role": "user" if i % 2 == 0 else "assistant", "content": [{"type": "text", "text": t}]}
            for i, t in enumerate(turn["value"] for turn in turns)
        ],
        tokenize=False,
    )
    decoded = re.sub(
        r"(<\|image_pad\|>)+", "<|image_pad|>", processor.tokenizer.decode(batch["input_ids"][0])
    )
    assert decoded + "\n" == full  # the pieces are the chat template's own rendering, cut at the targets


def test_video_conversation_is_decoded_at_video_fps(tmp_path, processor, make_video):
    videos = [make_video("a.mp4", num_frames=16, fps=8), make_video("b.mp4", num_frames=16, fps=8)]
    turns = [{"from": "human", "value": "Which video is better?"}, {"from": "gpt", "value": "Video 2"}]
    path = tmp_path / "videos.json"
    path.write_text(
        json.dumps([{"conversations": turns, "images": [str(v) for v in videos], "video_fps": 2.0}])
    )
    item = dataset([path], processor)[0]
    assert [len(v.indices) for v in item["visuals"]] == [4, 4]  # 2 s at 2 fps
    batch = GRMSFTCollator(processor)([item])
    assert batch["video_grid_thw"][:, 0].tolist() == [2, 2]  # 4 frames / temporal patch 2
    assert (batch["mm_token_type_ids"] == 2).any() and "pixel_values" not in batch
    assert target_texts(processor, batch, 0) == ["Video 2<|im_end|>"]


def test_a_longer_sample_is_an_error_naming_file_and_index(sft_file, processor):
    data = dataset([sft_file], processor)
    with pytest.raises(
        ValueError, match=rf"{sft_file} example 3: \d+ tokens > max_length 20; .*never truncated"
    ):
        GRMSFTCollator(processor, max_length=20)([data[3]])


def test_bad_examples_are_reported_with_file_and_index(tmp_path):
    path = tmp_path / "bad.json"
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "images": []}
    path.write_text(
        json.dumps([good, {"conversations": [{"from": "gpt", "value": "a"}]}, {**good, "images": ["no.png"]}])
    )
    with pytest.raises(DataValidationError) as err:
        load_sft_file(path)
    assert [(p.line, "turn 0" in p.message or "missing media" in p.message) for p in err.value.problems] == [
        (1, True),
        (2, True),
    ]


def test_source_weights_set_the_epoch_mix():
    sizes, weights = [10, 7, 4], [1.0, 0.5, 2.5]
    assert mix_counts(sizes, weights) == [10, round(3.5), 10]  # round(w * n); round(3.5) = 4 (banker's)
    order = epoch_order(sizes, weights, seed=3, epoch=0)
    per_source = Counter(source for source, _ in order)
    assert per_source == {0: 10, 1: 4, 2: 10}
    third = Counter(index for source, index in order if source == 2)
    assert sorted(third.values()) == [2, 2, 3, 3]  # two full passes + 2 of the 4 drawn again
    half = [index for source, index in order if source == 1]
    assert len(set(half)) == 4  # a subset without repeats
    assert epoch_order(sizes, weights, seed=3, epoch=0) == order  # seeded
    later = {tuple(i for s, i in epoch_order(sizes, weights, 3, e) if s == 1) for e in range(6)}
    assert len(later) > 1  # a new subset per epoch
    with pytest.raises(ValueError, match="rounds to 0"):
        mix_counts([3], [0.1])


def test_dataset_follows_the_mix_and_set_epoch(sft_file, tmp_path, processor):
    other = tmp_path / "other.json"
    other.write_text(json.dumps(json.loads(sft_file.read_text())[:2]))
    data = dataset([sft_file, other], processor, weights=[0.5, 2.0])
    assert len(data) == round(0.5 * NUM_PAIRS) + 2 * 2
    before = list(data.order)
    data.set_epoch(1)
    assert len(data) == len(before)


def config_values(sft_file: Path, checkpoint: Path, output: Path, **training) -> dict:
    values = yaml.safe_load(TINY_CONFIG.read_text())
    values["model"]["name_or_path"] = str(checkpoint)
    values["data"] = [{"path": str(sft_file), "weight": 1.0}]
    values["training"].update(output_dir=str(output), use_cpu=True, disable_tqdm=True, **training)
    return values


def test_config_errors_name_the_dotted_key(sft_file, tmp_path):
    values = config_values(sft_file, tmp_path / "model", tmp_path / "out")
    with pytest.raises(ConfigError, match=r"unknown key 'data\[0\].wieght'"):
        load_grm_sft_config(values={**values, "data": [{"path": "x.json", "wieght": 2}]})
    with pytest.raises(ConfigError, match="weight: must be > 0"):
        load_grm_sft_config(values={**values, "data": [{"path": "x.json", "weight": 0}]})
    with pytest.raises(ConfigError, match="data: a list"):
        load_grm_sft_config(values={**values, "data": []})
    config = load_grm_sft_config(values=values, overrides=["--max_steps", "3", "--lora.r", "4"])
    assert (config.training.max_steps, config.sections.lora.r) == (3, 4)
    assert config.training.learning_rate == 1e-3 and not config.training.remove_unused_columns


@pytest.mark.slow
@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_two_steps_of_grm_sft_then_grm_eval_on_the_tiny_model(sft_file, tmp_path, tiny_cache, lora):
    """train_rm's dispatch runs 2 steps (trained weights move), eval_rm's runs the generation path."""
    checkpoint = tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache)
    out = tmp_path / "run"
    values = config_values(sft_file, checkpoint, out, max_steps=2, per_device_train_batch_size=2)
    values["lora"]["enabled"] = lora
    config_path = tmp_path / "grm_sft.yaml"
    config_path.write_text(yaml.safe_dump(values))
    metrics = run_train_task(str(config_path), [])
    assert metrics["train_loss"] > 0
    if lora:
        lora_b = [t for name, t in load_file(out / "adapter_model.safetensors").items() if "lora_B" in name]
        assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: training moved it
    else:
        before, after = load_file(checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
        assert any(not torch.equal(before[name], after[name]) for name in before if name in after)
    run = json.loads((out / "grm_run.json").read_text())
    assert run["data"][0]["examples_per_epoch"] == NUM_PAIRS

    pairs = write_image_pairs(tmp_path / "held_out", 3)
    held_out = tmp_path / "held_out.json"
    rows = [
        {"prompt": f"a bright square {i}", "path1": str(b), "path2": str(w), "model1": "m", "model2": "m"}
        for i, (b, w) in enumerate(pairs)
    ]
    held_out.write_text(json.dumps(rows))
    eval_values = {
        "task": "grm",
        "model_dir": str(out),
        "data_path": f"hpdv3:{held_out}",
        "output_dir": str(tmp_path / "eval"),
        "batch_size": 2,
        "max_new_tokens": 8,
    }
    eval_path = tmp_path / "grm_eval.yaml"
    eval_path.write_text(yaml.safe_dump(eval_values))
    lines = run_eval_task(str(eval_path), [])
    results = json.loads((tmp_path / "eval" / "grm_eval.json").read_text())
    assert results["total"] == 3 and results["parsed"] + results["unparseable"] == 3
    assert set(results) >= {"accuracy", "parse_rate", "model_dir", "data_path"}
    assert lines[0].startswith(f"hpdv3:{held_out}: accuracy") and "over 3 pairs" in lines[0]
    processed = (tmp_path / "eval" / "verdicts.processed.jsonl").read_text().splitlines()
    assert len(processed) == 3
