"""The tiny checkpoints load like Hub checkpoints and run real image and video forwards.

`tiny_cache` (conftest.py) is one checkpoint cache per session, shared with the other test files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from vlmrm.modeling.families import FAMILIES, family_for
from vlmrm.testing.tiny import QWEN_SPECIAL_TOKENS, build_tiny_checkpoint, parameter_count, tiny_checkpoint

MAX_TINY_PARAMETERS = 2_000_000
FRAME_SIDE = 64
NUM_FRAMES = 8
QUESTION = "Is the ball moving to the left?"


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def loaded(request: pytest.FixtureRequest, tiny_cache: Path):
    """(family name, checkpoint path, processor, model), loaded the way a user loads a Hub model."""
    path = tiny_checkpoint(request.param, cache_dir=tiny_cache)
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    return request.param, path, processor, model


def _prompt(processor, kind: str) -> str:
    messages = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": QUESTION}]}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _forward(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()
    return logits


def test_family_for_accepts_names_and_configs_and_rejects_others(loaded):
    family, _, _, model = loaded
    assert family_for(family) is FAMILIES[family]
    assert family_for(model.config) is FAMILIES[family]
    with pytest.raises(ValueError, match="qwen2_5_vl, qwen2_vl, qwen3_vl"):
        family_for("llava")


def test_reload_uses_real_classes_and_tokenizer_ids(loaded):
    family, path, processor, model = loaded
    row = FAMILIES[family]
    assert type(model) is row.model_class
    assert type(processor) is row.processor_class
    assert type(processor.video_processor) is row.video_processor_class
    assert model.config.model_type == family
    assert sum(p.numel() for p in model.parameters()) == parameter_count(path) < MAX_TINY_PARAMETERS

    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    config = model.config
    assert config.image_token_id == ids("<|image_pad|>")
    assert config.video_token_id == ids("<|video_pad|>")
    assert config.vision_start_token_id == ids("<|vision_start|>")
    assert config.vision_end_token_id == ids("<|vision_end|>")
    assert config.text_config.eos_token_id == tokenizer.eos_token_id == ids("<|im_end|>")
    assert config.text_config.pad_token_id == tokenizer.pad_token_id == ids("<|endoftext|>")
    assert config.text_config.vocab_size == len(tokenizer)
    for token in QWEN_SPECIAL_TOKENS:
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [ids(token)]
    assert config.vision_config.patch_size == processor.image_processor.patch_size == row.patch_size


def test_tokenizer_round_trips_any_text(loaded):
    _, _, processor, _ = loaded
    text = "Ünïcode, emoji 🎥 and 中文 — all byte-level.\n\tTabs too: 3.14"
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert processor.tokenizer.decode(ids) == text


def test_image_forward(loaded):
    _, _, processor, model = loaded
    image = np.random.default_rng(0).integers(0, 256, (FRAME_SIDE, FRAME_SIDE, 3), dtype=np.uint8)
    inputs = processor(text=[_prompt(processor, "image")], images=[image], return_tensors="pt")

    assert "mm_token_type_ids" in inputs
    merge = processor.image_processor.merge_size
    n_image_tokens = (inputs["input_ids"] == model.config.image_token_id).sum()
    assert (
        n_image_tokens
        == inputs["image_grid_thw"].prod() // merge**2
        == (inputs["mm_token_type_ids"] == 1).sum()
    )
    # A 64x64 image stays 4x4 patches instead of being upscaled to the real models' minimum size.
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    _forward(model, inputs)


def test_video_forward(loaded):
    family, _, processor, model = loaded
    frames = np.random.default_rng(1).integers(
        0, 256, (NUM_FRAMES, FRAME_SIDE, FRAME_SIDE, 3), dtype=np.uint8
    )
    inputs = processor(
        text=[_prompt(processor, "video")], videos=[frames], do_sample_frames=False, return_tensors="pt"
    )

    assert "mm_token_type_ids" in inputs
    merge = processor.video_processor.merge_size
    grid = inputs["video_grid_thw"]
    assert grid.tolist() == [[NUM_FRAMES // FAMILIES[family].temporal_patch_size, 4, 4]]
    n_video_tokens = (inputs["input_ids"] == model.config.video_token_id).sum()
    assert n_video_tokens == grid.prod() // merge**2 == (inputs["mm_token_type_ids"] == 2).sum()
    if FAMILIES[family].frame_timestamps:
        assert "seconds>" in processor.tokenizer.decode(inputs["input_ids"][0])
    _forward(model, inputs)


def test_same_seed_builds_identical_checkpoints(tmp_path: Path):
    first = build_tiny_checkpoint("qwen2_vl", tmp_path / "a", seed=7)
    second = build_tiny_checkpoint("qwen2_vl", tmp_path / "b", seed=7)
    other = build_tiny_checkpoint("qwen2_vl", tmp_path / "c", seed=8)

    weights_a, weights_b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    weights_c = load_file(other / "model.safetensors")
    assert not all(torch.equal(weights_a[name], weights_c[name]) for name in weights_a)


def test_cache_reuses_one_complete_folder(tiny_cache: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VLMRM_CACHE_DIR", str(tiny_cache))
    path = tiny_checkpoint("qwen3_vl")
    assert path == tiny_checkpoint("qwen3_vl", cache_dir=tiny_cache)
    assert path.parent.parent == tiny_cache and path.name.startswith("qwen3_vl-seed0-")
    assert (path / "model.safetensors").is_file() and (path / "processor_config.json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "staging folder left behind"


@pytest.mark.slow
def test_cli_builds_the_same_checkpoint_in_a_fresh_process(tiny_cache: Path, tmp_path: Path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "vlmrm.tiny", "--family", "qwen3_vl", "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{out} {parameter_count(out)} parameters" in result.stdout
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen3_vl"
    # A new process (new hash seeds) reproduces the tokenizer and weights of the in-process build.
    cached = tiny_checkpoint("qwen3_vl", cache_dir=tiny_cache)
    assert (out / "tokenizer.json").read_bytes() == (cached / "tokenizer.json").read_bytes()
    assert (out / "model.safetensors").read_bytes() == (cached / "model.safetensors").read_bytes()


def test_tiny_spec_rejects_mrope_section_of_the_wrong_head_dim():
    spec = FAMILIES["qwen2_vl"].tiny
    with pytest.raises(ValueError, match="must sum to head_dim / 2 = 16"):
        replace(spec, rope_parameters={**spec.rope_parameters, "mrope_section": (16, 24, 24)})
