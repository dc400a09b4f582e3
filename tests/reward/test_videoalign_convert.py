"""VideoAlign checkpoints in both layouts VideoAlign writes convert to vlmrm with equal rewards.

The VideoAlign side is rebuilt here from a tiny Qwen2-VL: a backbone with spare embedding rows (as
Qwen2-VL-2B has: VideoAlign's resize to the tokenizer length then shrinks the matrix and the reward
tokens take existing rows), random LoRA weights on every LLM linear, a bias-free ``rm_head``, and the
files exactly as VideoAlign saves them (transformers-4.45 key names under PEFT's ``base_model.model.``).
The reference reward is an independent re-implementation of VideoAlign's forward — embeddings,
vision features scattered into the video tokens, the text model with positions 0..T-1 in all three
rotary sections (what 4.45 used when ``position_ids`` was not given), ``rm_head`` at the reward
tokens in text order, diagonal — on weights merged by hand; not the converter's code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

from vlmrm.media.processor import image_factor
from vlmrm.media.video import load_video, resolve_backend
from vlmrm.reward.inference import RewardScorer
from vlmrm.reward.videoalign_compat import VideoVLMRewardInference
from vlmrm.reward.videoalign_convert import ConversionError, convert_videoalign
from vlmrm.testing.tiny import build_tiny_model

TOKENS = ["<|VQ_reward|>", "<|MQ_reward|>", "<|TA_reward|>"]
SPARE_ROWS = 8
LORA_R, LORA_ALPHA = 4, 8
PREFIX = "base_model.model."
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
STATS = {"VQ_mean": 0.5, "VQ_std": 2.0, "MQ_mean": -1.0, "MQ_std": 0.5, "TA_mean": 0.25, "TA_std": 4.0}
TEMPLATE_SOURCE = '''
DIMENSION_DESCRIPTIONS = {
    "VQ": ["look", "how it looks"],
    "MQ": ["moves", "how it moves"],
    "TA": ["fit", "how it fits"],
}
SIMPLE_PROMPT = """
Judge the {dimension_name}: {dimension_description}. Prompt "{text_prompt}".
"""
DETAILED_PROMPT_WITH_SPECIAL_TOKEN = """
Prompt - {text_prompt}
Look: <|VQ_reward|>
END
Motion: <|MQ_reward|>
END
Fit: <|TA_reward|>
END
"""
'''
"""A stand-in for a VideoAlign clone's prompt_template.py (vlmrm does not ship VideoAlign's text)."""
PROMPTS = ["a red ball rolls", "two cats"]


@pytest.fixture(scope="module")
def videoalign_base(tmp_path_factory):
    """A tiny backbone saved with SPARE_ROWS embedding rows beyond its tokenizer, like Qwen2-VL-2B."""
    model, processor = build_tiny_model("qwen2_vl", seed=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)  # the spare rows (the reward tokens' embeddings) are drawn here
        model.resize_token_embeddings(len(processor.tokenizer) + SPARE_ROWS, mean_resizing=False)
    path = tmp_path_factory.mktemp("videoalign_base")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def trained_weights(base):
    """VideoAlign's weights after training, in 4.45 names: base + perturbed vision tower, LoRA
    factors per LLM linear, rm_head (3, H) without bias, embeddings cut to the tokenizer length."""
    gen = torch.Generator().manual_seed(7)
    legacy = load_file(base / "model.safetensors")
    processor = AutoProcessor.from_pretrained(base)
    rows = len(processor.tokenizer) + len(TOKENS)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        legacy[name] = legacy[name][:rows].clone()
    for key in [k for k in legacy if k.startswith("visual.merger")]:
        legacy[key] = legacy[key] + 0.05 * torch.randn(legacy[key].shape, generator=gen)
    lora = {}
    for key, weight in legacy.items():
        if key.endswith(".weight") and key.split(".")[-2] in TARGETS and key.startswith("model.layers"):
            module = key[: -len(".weight")]
            lora[module] = (
                0.2 * torch.randn(LORA_R, weight.shape[1], generator=gen),
                0.2 * torch.randn(weight.shape[0], LORA_R, generator=gen),
            )
    hidden = legacy["model.norm.weight"].shape[0]
    head = torch.randn(len(TOKENS), hidden, generator=gen)
    return legacy, lora, head


def model_config(base, template="detailed_special"):
    return {
        "data_config": {
            "meta_data": "train.csv",
            "data_dir": ".",
            "meta_data_test": None,
            "max_frame_pixels": 200704,
            "num_frames": None,
            "fps": 2.0,
            "eval_dim": ["VQ", "MQ", "TA"],
            "prompt_template_type": template,
            "sample_type": "uniform",
            "use_tied_data": True,
        },
        "training_args": {"output_dir": "rm_output", "max_length": 6144},
        "model_config": {
            "model_name_or_path": str(base),
            "output_dim": 3,
            "use_special_tokens": True,
            "reward_token": "special",
            "loss_type": "btt",
        },
        "peft_lora_config": {
            "lora_enable": True,
            "vision_lora": False,
            "lora_r": LORA_R,
            "lora_alpha": LORA_ALPHA,
            "lora_dropout": 0.05,
            "lora_namespan_exclude": ["lm_head", "rm_head", "embed_tokens", "visual"],
            "use_rslora": False,
        },
        "inference_config": STATS,
    }


def write_run(root, base, layout, weights):
    """A VideoAlign run folder: model_config.json + checkpoint-4/ in ``layout`` (full or adapter)."""
    legacy, lora, head = weights
    checkpoint = root / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    (root / "model_config.json").write_text(json.dumps(model_config(base), indent=4))
    processor = AutoProcessor.from_pretrained(base)
    processor.tokenizer.add_special_tokens({"additional_special_tokens": TOKENS})
    processor.tokenizer.save_pretrained(checkpoint / "tokenizer")
    if layout == "full":
        state = {}
        for key, tensor in legacy.items():
            module = key.rsplit(".", 1)[0]
            if module in lora:
                state[f"{PREFIX}{module}.base_layer.{key.rsplit('.', 1)[1]}"] = tensor
            else:
                state[PREFIX + key] = tensor
        for module, (a, b) in lora.items():
            state[f"{PREFIX}{module}.lora_A.default.weight"] = a
            state[f"{PREFIX}{module}.lora_B.default.weight"] = b
        state[PREFIX + "rm_head.weight"] = head
        torch.save(state, checkpoint / "model.pth")
        return
    adapter = {}
    for module, (a, b) in lora.items():
        adapter[f"{PREFIX}{module}.lora_A.weight"] = a
        adapter[f"{PREFIX}{module}.lora_B.weight"] = b
    save_file(adapter, checkpoint / "adapter_model.safetensors")
    (checkpoint / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "r": LORA_R,
                "lora_alpha": LORA_ALPHA,
                "use_rslora": False,
                "target_modules": sorted(lora),
                "bias": "none",
                "task_type": "CAUSAL_LM",
            }
        )
    )
    trained = {PREFIX + k: v for k, v in legacy.items() if k.startswith("visual.")}
    trained[PREFIX + "rm_head.weight"] = head
    torch.save(trained, checkpoint / "non_lora_state_dict.pth")


def reference_rewards(base, weights, tmp_path, video_paths, spec):
    """VideoAlign's forward, re-implemented on hand-merged weights (module docstring)."""
    legacy, lora, head = weights
    merged = dict(legacy)
    for module, (a, b) in lora.items():
        merged[f"{module}.weight"] = legacy[f"{module}.weight"] + (LORA_ALPHA / LORA_R) * (b @ a)
    folder = tmp_path / "reference"
    folder.mkdir()
    config = json.loads((base / "config.json").read_text())
    config["text_config"]["vocab_size"] = merged["model.embed_tokens.weight"].shape[0]
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in merged.items()}, folder / "model.safetensors")
    model = Qwen2VLForConditionalGeneration.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(base)
    processor.tokenizer.add_special_tokens({"additional_special_tokens": TOKENS})
    special_ids = processor.tokenizer.convert_tokens_to_ids(TOKENS)
    texts = []
    for prompt in PROMPTS:
        text = TEMPLATE_BODY.format(text_prompt=prompt)
        content = [{"type": "video"}, {"type": "text", "text": text}]
        texts.append(
            processor.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
        )
    videos = [
        load_video(p, spec.frame_sampling(), resolve_backend("auto"), image_factor(processor))
        for p in video_paths
    ]
    batch = processor(
        text=texts,
        videos=[v.frames for v in videos],
        padding=True,
        return_tensors="pt",
        videos_kwargs={"do_sample_frames": False, "do_resize": False},
    )
    ids = batch["input_ids"]
    with torch.no_grad():
        embeds = model.model.get_input_embeddings()(ids)
        features = model.model.visual(
            batch["pixel_values_videos"], grid_thw=batch["video_grid_thw"]
        ).pooler_output
        video_mask = (ids == model.config.video_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(video_mask, features)
        positions = torch.arange(ids.shape[1]).view(1, 1, -1).expand(3, ids.shape[0], -1)
        hidden = model.model.language_model(
            inputs_embeds=embeds, attention_mask=batch["attention_mask"], position_ids=positions
        ).last_hidden_state
        logits = hidden @ head.T
        special = torch.isin(ids, torch.tensor(special_ids))
        pooled = logits[special].view(ids.shape[0], len(TOKENS), -1).diagonal(dim1=1, dim2=2)
    return pooled.numpy()


TEMPLATE_BODY = TEMPLATE_SOURCE.split('DETAILED_PROMPT_WITH_SPECIAL_TOKEN = """')[1].split('"""')[0]


@pytest.fixture
def clone(tmp_path):
    repo = tmp_path / "VideoAlign"
    repo.mkdir()
    (repo / "prompt_template.py").write_text(TEMPLATE_SOURCE)
    return repo


@pytest.mark.parametrize("layout", ["full", "adapter"])
def test_converted_rewards_equal_videoalign_forward(layout, videoalign_base, clone, tmp_path, make_video):
    weights = trained_weights(videoalign_base)
    run = tmp_path / "run"
    write_run(run, videoalign_base, layout, weights)
    out = convert_videoalign(run, tmp_path / "converted", videoalign_repo=clone)
    videos = [make_video("a.mp4", 16, 8), make_video("b.mp4", 24, 8)]

    scorer = RewardScorer.from_pretrained(out, device="cpu")
    spec = scorer.spec
    assert spec.prompt_template_text == TEMPLATE_BODY.replace("{text_prompt}", "{prompt}")
    assert spec.sampling["frame_rounding"] == "round" and spec.rope_positions == "sequential"
    ours = scorer.raw_rewards(PROMPTS, videos=videos)
    expected = reference_rewards(videoalign_base, weights, tmp_path, videos, spec)
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)
    assert np.abs(expected).max() > 1e-2  # the comparison is not between zeros

    # VideoAlign's call shape: normalised with inference_config, Overall = their sum
    compat = VideoVLMRewardInference(out, device="cpu", dtype=torch.float32)
    got = compat.reward([str(v) for v in videos], PROMPTS, use_norm=True)
    for row, raw in zip(got, expected):
        z = [(raw[i] - STATS[f"{d}_mean"]) / STATS[f"{d}_std"] for i, d in enumerate(["VQ", "MQ", "TA"])]
        assert [row["VQ"], row["MQ"], row["TA"]] == pytest.approx(z, abs=1e-5)
        assert row["Overall"] == pytest.approx(sum(z), abs=1e-5)
    raw_rows = compat.reward([str(v) for v in videos], PROMPTS, use_norm=False)  # the reference's batch
    got_raw = np.array([[r[d] for d in ("VQ", "MQ", "TA")] for r in raw_rows])
    np.testing.assert_allclose(got_raw, expected, atol=1e-5, rtol=0)
    # a per-call frame count, as VideoAlign's num_frames argument; the checkpoint's sampling is restored
    two_frames = compat.reward([str(videos[1])], PROMPTS[1:], num_frames=2, use_norm=False)[0]
    assert compat.scorer.sampling == compat.default_sampling
    assert abs(two_frames["VQ"] - expected[1, 0]) > 1e-4
    with pytest.raises(ValueError, match="cannot be set at the same time"):
        compat.reward([str(videos[1])], PROMPTS[1:], fps=1.0, num_frames=2)


def test_errors_name_the_file_and_key(videoalign_base, clone, tmp_path):
    weights = trained_weights(videoalign_base)
    run = tmp_path / "run"
    write_run(run, videoalign_base, "full", weights)
    checkpoint = run / "checkpoint-4" / "model.pth"
    state = torch.load(checkpoint)
    state[PREFIX + "model.extra_block.weight"] = torch.zeros(2)
    torch.save(state, checkpoint)
    with pytest.raises(ConversionError, match=r"model\.pth: key 'model\.extra_block\.weight'"):
        convert_videoalign(run, tmp_path / "out", videoalign_repo=clone)
    del state[PREFIX + "model.extra_block.weight"]
    del state[PREFIX + "rm_head.weight"]
    torch.save(state, checkpoint)
    with pytest.raises(ConversionError, match=r"model\.pth: key 'rm_head\.weight'"):
        convert_videoalign(run, tmp_path / "out", videoalign_repo=clone)
    with pytest.raises(ConversionError, match="--videoalign_repo"):
        convert_videoalign(run, tmp_path / "out")


def test_simple_template_is_filled_as_videoalign_formats_it(videoalign_base, clone, tmp_path):
    from vlmrm.reward.videoalign_convert import template_text

    text = template_text("simple", ["VQ", "MQ", "TA"], clone)
    assert (
        text
        == '\nJudge the overall performance(look, moves, fit): the overall performance of the video. Prompt "{prompt}".\n'
    )
    assert template_text("simple", ["MQ"], clone) == '\nJudge the moves: how it moves. Prompt "{prompt}".\n'
    assert template_text("none", ["VQ"], None) == "{prompt}"


@pytest.mark.slow
def test_converted_checkpoint_evaluates_and_fine_tunes(videoalign_base, clone, tmp_path, synthetic_pairs):
    from tests.conftest import tiny_run_values
    from vlmrm.modeling.loading import build_reward_model
    from vlmrm.reward.config import parse_config
    from vlmrm.reward.evaluate import parse_eval_config, run_evaluation
    from vlmrm.reward.train import run_training

    write_run(tmp_path / "run", videoalign_base, "full", trained_weights(videoalign_base))
    converted = convert_videoalign(tmp_path / "run", tmp_path / "converted", videoalign_repo=clone)
    rows = run_evaluation(
        parse_eval_config(
            values={
                "model_dirs": [str(converted)],
                "dataset_path": str(synthetic_pairs / "test.csv"),
                "data_dir": str(synthetic_pairs),
                "eval_batch_size": 2,
                "output_dir": str(tmp_path / "eval"),
                "max_eval_samples": 2,
                "swap_check": False,
                "report": False,
            }
        )
    )
    assert {r["dimension"] for r in rows} == {"VQ", "MQ", "TA"} and not any(r["error"] for r in rows)
    assert all(r["count"] == 2 for r in rows)

    source = RewardScorer.from_pretrained(converted, device="cpu")
    template = tmp_path / "videoalign_template.txt"
    template.write_text(source.spec.prompt_template_text)
    values = tiny_run_values(
        videoalign_base,
        synthetic_pairs,
        tmp_path / "finetune",
        init_from=str(converted),
        use_special_tokens=True,
        reward_token="special",
        output_dim=3,
        prompt_template_file=str(template),
        num_frames=None,
        fps=2.0,
        frame_rounding="round",
        min_frame_pixels=None,
        max_frame_pixels=200704,
        total_pixels=24576 * 28 * 28,
        max_steps=1,
        normalization_pairs=0,
        per_device_train_batch_size=1,
        meta_data_test=None,
    )
    run_config = parse_config(values=values)
    model, processor = build_reward_model(run_config.model, run_config.data, run_config.training)
    assert model.reward_spec.rope_positions == "sequential"  # taken over from the source weights
    videos = [synthetic_pairs / "videos" / "test_0000_A.mp4", synthetic_pairs / "videos" / "test_0001_B.mp4"]
    start = RewardScorer(model, processor, "cpu").raw_rewards(PROMPTS, videos=videos)
    np.testing.assert_allclose(start, source.raw_rewards(PROMPTS, videos=videos), atol=1e-5, rtol=0)
    run_training(run_config)
    tuned = RewardScorer.from_pretrained(tmp_path / "finetune", device="cpu")
    assert (
        tuned.spec.rope_positions == "sequential" and tuned.spec.prompt_template_text == template.read_text()
    )


def test_command_line_reports_the_missing_file(tmp_path, capsys):
    from vlmrm.convert import main

    assert main(["nothing"]) == 2
    with pytest.raises(SystemExit) as stopped:
        main(["videoalign", "--src", str(tmp_path), "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert f"{tmp_path / 'model_config.json'}: missing" in capsys.readouterr().err
