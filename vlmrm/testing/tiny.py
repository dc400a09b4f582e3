"""Tiny random-weight Qwen-VL checkpoints, built locally for tests and CPU smoke runs.

The checkpoints use the real transformers architecture, config, processor and tokenizer classes
of each family (see `vlmrm.modeling.families`), only far smaller, so code that works on them works
on `Qwen/Qwen2-VL-2B-Instruct` & co. unchanged: they load with `AutoProcessor.from_pretrained`
and `AutoModelForImageTextToText.from_pretrained`. Nothing is downloaded: the byte-level BPE
tokenizer is trained on the fly on a small built-in corpus, so any text tokenizes, and every
special-token id in the config is read back from that tokenizer.

Usage: `python -m vlmrm.tiny --family qwen2_vl --out /tmp/tiny-qwen2-vl [--seed 0]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import tokenizers
import torch
import transformers
from safetensors import safe_open
from tokenizers import Tokenizer, models, trainers
from transformers import PreTrainedModel, ProcessorMixin, Qwen2Tokenizer

from vlmrm.modeling.families import FAMILIES, ModelFamily, family_for

# Bump when the build recipe changes in a way the hashed inputs below do not capture.
TINY_FORMAT_VERSION = 1
CACHE_ENV_VAR = "VLMRM_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/vlmrm")
# mkdtemp creates private (0700) folders; a finished checkpoint is readable like any cache entry.
CACHE_DIR_MODE = 0o755
# Target vocabulary of the trained BPE (bytes + merges); the small corpus stops it earlier.
TINY_BPE_VOCAB_SIZE = 1024
# Real Qwen tokenizers advertise 32768; vlmrm truncates long prompts against this.
TOKENIZER_MAX_LENGTH = 32768

# The added special tokens of the released Qwen2-VL / Qwen2.5-VL / Qwen3-VL tokenizers, in their
# id order (the real ids start at 151643; here they follow the trained BPE vocabulary).
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
QWEN_SPECIAL_TOKENS = (
    ENDOFTEXT,
    IM_START,
    IM_END,
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    VISION_START,
    VISION_END,
    "<|vision_pad|>",
    IMAGE_PAD,
    VIDEO_PAD,
)

# What vlmrm prompts look like: chat-template words, descriptions of videos and images, numbers.
# Byte-level BPE covers any other text too; this only decides which words get merged tokens.
TINY_CORPUS = (
    "system user assistant You are a helpful assistant. Picture 1: Video 1: Picture 2: Video 2:",
    "Which video is better? Which image is better? Rate the video. Rate the image. Answer yes or no.",
    "Is the first video better than the second video? The first one is better. The second one is better.",
    "Describe this video. Describe this image. What happens in the video? What is shown in the image?",
    "The video shows a red ball moving to the left. The image shows a blue square on a white background.",
    "A green circle moves up and a yellow triangle moves down. An orange star rotates slowly.",
    "The purple cube bounces quickly, then stops. A black line grows from left to right across the frame.",
    "colours: red, green, blue, yellow, orange, purple, pink, brown, black, white, grey, gray, cyan, magenta.",
    "shapes: circle, square, triangle, rectangle, star, line, dot, ball, cube, box, ring, cross, arrow.",
    "motion: moves, moving, moved, still, static, fast, slow, quickly, slowly, left, right, up, down, spins.",
    "quality: bright, dark, brighter, darker, sharp, blurry, smooth, noisy, clear, good, bad, better, worse.",
    "The scene is bright and the colours are vivid. The frame is dark, blurry and noisy. Motion is smooth.",
    "Prompt: a cat walking on the grass in the sun. A dog runs along the beach at sunset near the sea.",
    "A person is cooking in a kitchen. A car drives on a road through the city at night under the rain.",
    "The generated video follows the prompt well. The generated image does not match the prompt.",
    "Visual quality, text alignment, motion quality, overall score, reward, preference, chosen, rejected.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 16 24 32 64 100 0.5 1.0 2.5 seconds frames fps 0.2 seconds 1.5 seconds",
    "Score: 1 out of 5. Score: 5 out of 5. Rating: 3/5. Yes. No. A. B. The answer is A. The answer is B.",
    "Punctuation: . , ; : ! ? ' \" ( ) [ ] { } < > - _ + = * / \\ | @ # $ % ^ & ~ ` and new lines\n\n",
    "the a an of in on at to from with and or but not is are was were be been it this that these those",
    "there here what which who how when where why because so very more most less least than then also",
)


def _train_tokenizer(chat_template: str) -> Qwen2Tokenizer:
    """Train a byte-level BPE on `TINY_CORPUS` and wrap it in the real Qwen2 tokenizer class.

    The normaliser and pre-tokeniser are taken from an empty `Qwen2Tokenizer`, so splitting is
    exactly Qwen's; `tokenizers`' BPE trainer is deterministic for a fixed corpus and settings.
    """
    qwen_pipeline = Qwen2Tokenizer().backend_tokenizer
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = qwen_pipeline.normalizer
    bpe.pre_tokenizer = qwen_pipeline.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_BPE_VOCAB_SIZE,
        min_frequency=2,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(TINY_CORPUS, trainer=trainer)
    trained = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(trained["vocab"])
    for token in QWEN_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(pair) for pair in trained["merges"]],
        unk_token=None,
        bos_token=None,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        extra_special_tokens=[t for t in QWEN_SPECIAL_TOKENS if t not in (ENDOFTEXT, IM_END)],
        model_max_length=TOKENIZER_MAX_LENGTH,
        chat_template=chat_template,
    )


def _build_config(family: ModelFamily, tokenizer: Qwen2Tokenizer) -> transformers.PretrainedConfig:
    """The family's real config class at tiny sizes; every token id is read from `tokenizer`."""
    spec = family.tiny
    token_id = tokenizer.convert_tokens_to_ids
    rope_parameters = {
        key: list(value) if isinstance(value, tuple) else value for key, value in spec.rope_parameters.items()
    }
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        # Qwen3-VL declares head_dim (default 128); Qwen2/2.5-VL derive the same value from
        # hidden_size / num_attention_heads and keep this as an informational extra key.
        "head_dim": spec.head_dim,
        "rope_parameters": rope_parameters,
        # As in the released configs: bos is <|endoftext|>, generation stops at <|im_end|>.
        "bos_token_id": token_id(ENDOFTEXT),
        "eos_token_id": token_id(IM_END),
        "pad_token_id": token_id(ENDOFTEXT),
    }
    vision_config = {
        **spec.vision_kwargs,
        "patch_size": family.patch_size,
        "spatial_merge_size": family.spatial_merge_size,
        "temporal_patch_size": family.temporal_patch_size,
    }
    return family.config_class(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=token_id(IMAGE_PAD),
        video_token_id=token_id(VIDEO_PAD),
        vision_start_token_id=token_id(VISION_START),
        vision_end_token_id=token_id(VISION_END),
    )


def _build_processor(family: ModelFamily, tokenizer: Qwen2Tokenizer) -> ProcessorMixin:
    """The family's real processor with pixel bounds that keep 56x56 / 64x64 frames as they are."""
    spec = family.tiny
    min_pixels = spec.min_tokens_per_frame * family.image_factor**2
    max_pixels = spec.max_tokens_per_frame * family.image_factor**2
    shared = {
        "patch_size": family.patch_size,
        "temporal_patch_size": family.temporal_patch_size,
        "merge_size": family.spatial_merge_size,
        "image_mean": list(family.image_mean),
        "image_std": list(family.image_std),
    }
    image_processor = family.image_processor_class(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, **shared
    )
    if family.video_size_per_clip:
        # `size` bounds the whole clip; with the per-frame cap on, `max_video_tokens` bounds a frame.
        video_bounds = {
            "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels * spec.max_video_frames},
            "max_video_tokens": spec.max_tokens_per_frame,
        }
    else:
        video_bounds = {"size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}}
    video_processor = family.video_processor_class(
        # qwen-vl-utils' per-frame pixel cap, as Qwen-VL training pipelines use it; setting it silences a warning.
        cap_pixels_per_frame=True,
        **video_bounds,
        **shared,
    )
    return family.processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=family.tiny.chat_template,
    )


def build_tiny_model(family: str, seed: int = 0) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Build a tiny random-weight model and its processor in memory.

    Args:
        family: a `config.model_type` of `vlmrm.modeling.families.FAMILIES` ("qwen2_vl", ...).
        seed: seeds the weight initialisation; the same seed gives identical weights.

    Returns:
        (model in eval mode, processor). The tokenizer is `processor.tokenizer`.
    """
    row = family_for(family)
    tokenizer = _train_tokenizer(row.tiny.chat_template)
    config = _build_config(row, tokenizer)
    # A private RNG stream: the same seed gives the same weights, and the caller's RNG is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = row.model_class(config).eval()
    return model, _build_processor(row, tokenizer)


def build_tiny_checkpoint(family: str, out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Build a tiny checkpoint and save model + processor into `out_dir` with `save_pretrained`.

    Returns:
        `out_dir` as a Path; load it with the Auto classes exactly like a Hub checkpoint.
    """
    out = Path(out_dir)
    model, processor = build_tiny_model(family, seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _spec_hash(family: ModelFamily) -> str:
    """Short hash of everything that shapes a build, so a changed recipe lands in a new folder."""
    recipe = repr(
        (
            TINY_FORMAT_VERSION,
            family,
            TINY_CORPUS,
            QWEN_SPECIAL_TOKENS,
            TINY_BPE_VOCAB_SIZE,
            transformers.__version__,
            tokenizers.__version__,
        )
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:10]


def tiny_checkpoint(family: str, cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Path of a cached tiny checkpoint, building it on first use.

    The cache root is `cache_dir`, else `$VLMRM_CACHE_DIR`, else `~/.cache/vlmrm`. A checkpoint is
    built in a temporary sibling folder and renamed into place, so concurrent test processes never
    see a half-written one; if two processes race, the loser's copy is discarded.
    """
    row = family_for(family)
    root = Path(cache_dir or os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR).expanduser()
    final = root / "tiny" / f"{row.model_type}-seed{seed}-{_spec_hash(row)}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build_tiny_checkpoint(row.model_type, staging, seed)
        staging.chmod(CACHE_DIR_MODE)
        os.rename(staging, final)
    except OSError:
        if not final.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def parameter_count(checkpoint: str | os.PathLike) -> int:
    """Number of parameters stored in a single-file safetensors checkpoint."""
    with safe_open(Path(checkpoint) / "model.safetensors", framework="pt") as weights:
        names = weights.keys()  # safe_open objects are not iterable themselves
        return sum(math.prod(weights.get_slice(name).get_shape()) for name in names)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a tiny random-weight Qwen-VL checkpoint.")
    parser.add_argument("--family", required=True, choices=sorted(FAMILIES), help="config.model_type")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="weight-initialisation seed")
    args = parser.parse_args(argv)
    path = build_tiny_checkpoint(args.family, args.out, args.seed)
    print(f"{path} {parameter_count(path)} parameters")


if __name__ == "__main__":
    sys.exit(main())
