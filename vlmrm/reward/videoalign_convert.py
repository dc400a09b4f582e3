"""VideoAlign reward checkpoints -> vlmrm reward checkpoints with the same rewards.

VideoAlign (transformers 4.45, PEFT) writes a run folder with ``model_config.json`` (its data /
training / model / LoRA settings, and in released models ``inference_config`` with per-dimension
mean and std) and ``checkpoint-N/`` folders in one of two layouts:

- ``model.pth`` (``save_full_model: true``, the released VideoReward layout): the whole PEFT model's
  ``state_dict()`` — keys ``base_model.model.<4.45 name>``, LoRA-wrapped linears as
  ``<module>.base_layer.weight`` + ``<module>.lora_A.default.weight`` / ``lora_B.default.weight``;
- ``adapter_model.safetensors`` + ``adapter_config.json`` (the LoRA weights, keys without the adapter
  name) + ``non_lora_state_dict.pth`` (the trained non-LoRA parameters: head, merger, vision tower),
  the ``train.sh`` default; every other weight is the base model's.

Conversion merges LoRA (W + s B A, s = alpha / r, or alpha / sqrt(r) with ``use_rslora``), renames
the 4.45 keys to the family's transformers-5 names, turns VideoAlign's bias-free ``rm_head`` into
vlmrm's head with a zero bias, adds the reward tokens with VideoAlign's ids, and writes a
``RewardSpec`` holding the rest: ``rope_positions: sequential`` (see ``RewardSpec``), frame sampling
with VideoAlign's rounding and pixel budget, the prompt template text read from the user's
VideoAlign clone, and ``inference_config`` as the normalisation. docs/videoalign_checkpoints.md
lists every field.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoProcessor, AutoTokenizer
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

from vlmrm.media.sampling import FrameSampling
from vlmrm.modeling.loading import add_reward_tokens
from vlmrm.modeling.reward_model import RewardSpec, attach_spec, reward_model_class, reward_token
from vlmrm.reward.templates import PROMPT_PLACEHOLDER, check_template_text

MODEL_CONFIG = "model_config.json"
FULL_WEIGHTS = "model.pth"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
NON_LORA_WEIGHTS = "non_lora_state_dict.pth"
TOKENIZER_DIR = "tokenizer"
TEMPLATE_SOURCE = "prompt_template.py"
PEFT_PREFIX = "base_model.model."
ADAPTER_NAME = "default"

VIDEOALIGN_DIMENSIONS = ("VQ", "MQ", "TA")
"""The reward tokens VideoAlign adds, in this order, whenever ``use_special_tokens`` is set."""
VIDEOALIGN_TOTAL_PIXELS = 24576 * 28 * 28
"""VideoAlign's copy of qwen-vl-utils caps a whole video at 24576 tokens of 28 x 28 pixels."""
VIDEOALIGN_HEAD = "rm_head.weight"
VLMRM_HEAD = "rm_head.layers.0"

TEMPLATE_CONSTANTS = {
    "simple": "SIMPLE_PROMPT",
    "video_score": "VIDEOSCORE_QUERY_PROMPT",
    "detailed": "DETAILED_PROMPT",
    "detailed_special": "DETAILED_PROMPT_WITH_SPECIAL_TOKEN",
}
"""VideoAlign's ``prompt_template_type`` -> the constant of its ``prompt_template.py`` holding the text
(``none`` is the prompt alone)."""
VIDEOALIGN_PROMPT_FIELD = "text_prompt"


class ConversionError(ValueError):
    """A VideoAlign file or key the converter cannot map; the message names both."""


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ConversionError(f"{path}: missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConversionError(f"{path}: not JSON ({error})") from error


def _need(section: dict, key: str, where: str):
    if key not in section:
        raise ConversionError(f"{where}: key {key!r} missing")
    return section[key]


def find_checkpoint(src: Path, step: int | None) -> Path:
    """``checkpoint-<step>``, or the highest step as VideoAlign's loader picks by default."""
    found = {
        int(p.name.split("-")[-1]): p for p in src.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
    }
    if not found:
        raise ConversionError(f"{src}: no checkpoint-N folder")
    if step is None:
        return found[max(found)]
    if step not in found:
        raise ConversionError(f"{src}: no checkpoint-{step} (have {sorted(found)})")
    return found[step]


def template_text(template_type: str, eval_dim: list[str], videoalign_repo: Path | None) -> str:
    """VideoAlign's prompt text for ``template_type``, with ``{prompt}`` where the prompt goes.

    The constant is read from the clone's ``prompt_template.py`` without running it (``ast``) and
    filled as VideoAlign's ``build_prompt`` does with ``str.format``: for several dimensions the name
    ``overall performance(<names joined by ", ">)`` and the description ``the overall performance of
    the video``, for one the entry of its ``DIMENSION_DESCRIPTIONS``.
    """
    if template_type == "none":
        return PROMPT_PLACEHOLDER
    if template_type not in TEMPLATE_CONSTANTS:
        raise ConversionError(
            f"{MODEL_CONFIG}: data_config.prompt_template_type {template_type!r} is not VideoAlign's"
        )
    if videoalign_repo is None:
        raise ConversionError(
            f"prompt_template_type {template_type!r}: pass --videoalign_repo DIR (a VideoAlign clone) so "
            f"its {TEMPLATE_SOURCE} text is stored in the checkpoint; vlmrm does not ship it"
        )
    source = Path(videoalign_repo) / TEMPLATE_SOURCE
    if not source.is_file():
        raise ConversionError(f"{source}: missing (is --videoalign_repo a VideoAlign clone?)")
    constants = {}
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    name = TEMPLATE_CONSTANTS[template_type]
    if name not in constants:
        raise ConversionError(f"{source}: no constant {name} for prompt_template_type {template_type!r}")
    descriptions = constants.get("DIMENSION_DESCRIPTIONS", {})
    if len(eval_dim) > 1:
        dimension_name = "overall performance(" + ", ".join(descriptions[d][0] for d in eval_dim) + ")"
        dimension_description = "the overall performance of the video"
    else:
        dimension_name, dimension_description = descriptions[eval_dim[0]]
    text = constants[name].format(
        text_prompt=PROMPT_PLACEHOLDER,
        dimension_name=dimension_name,
        dimension_description=dimension_description,
    )
    return check_template_text(text, f"{source}:{name}")


def lora_scale(r: int, alpha: float, rslora: bool, where: str) -> float:
    if r <= 0:
        raise ConversionError(f"{where}: LoRA rank {r} must be positive")
    return alpha / math.sqrt(r) if rslora else alpha / r


def merge_lora(state: dict[str, torch.Tensor], scale: float, where: str) -> dict[str, torch.Tensor]:
    """4.45 names with the PEFT prefix removed -> plain weights: each ``X.base_layer.*`` becomes ``X.*``
    with W + scale B A (linear) or W + scale (B A)^T (embedding, ``lora_embedding_A/B``)."""
    plain, lora = {}, {}
    for key, tensor in state.items():
        match = re.fullmatch(r"(.+)\.lora_(embedding_)?([AB])(?:\.default)?(?:\.weight)?", key)
        if match:
            lora.setdefault(match.group(1), {})[match.group(3)] = (tensor, bool(match.group(2)))
        else:
            plain[key.replace(".base_layer.", ".")] = tensor
    for module, parts in lora.items():
        if set(parts) != {"A", "B"}:
            raise ConversionError(f"{where}: {module} has lora_{''.join(parts)} without its pair")
        (a, embedding), (b, _) = parts["A"], parts["B"]
        delta = b.float() @ a.float()
        if embedding:
            delta = delta.T
        target = f"{module}.weight"
        if target not in plain:
            raise ConversionError(
                f"{where}: LoRA on {module} but no base weight {target} (nor in the base model)"
            )
        plain[target] = (plain[target].float() + scale * delta).to(plain[target].dtype)
    return plain


def strip_peft_prefix(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in state.items():
        if not key.startswith(PEFT_PREFIX):
            raise ConversionError(f"{where}: key {key!r} lacks the PEFT prefix {PEFT_PREFIX!r}")
        out[key[len(PEFT_PREFIX) :]] = tensor
    return out


def _load_pth(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ConversionError(f"{path}: not a state dict")
    return state


def videoalign_weights(checkpoint: Path, peft_cfg: dict, base_state: dict) -> dict[str, torch.Tensor]:
    """The trained weights in transformers-4.45 names, LoRA merged (layout: module docstring)."""
    full = checkpoint / FULL_WEIGHTS
    if full.is_file():
        state = _load_pth(full)
        if peft_cfg.get("lora_enable"):
            scale = lora_scale(
                peft_cfg["lora_r"], peft_cfg["lora_alpha"], peft_cfg.get("use_rslora", False), str(full)
            )
            return merge_lora(strip_peft_prefix(state, str(full)), scale, str(full))
        return state
    adapter, non_lora = checkpoint / ADAPTER_WEIGHTS, checkpoint / NON_LORA_WEIGHTS
    for needed in (adapter, non_lora):
        if not needed.is_file():
            raise ConversionError(f"{checkpoint}: neither {FULL_WEIGHTS} nor {needed.name}")
    adapter_cfg = _read_json(checkpoint / ADAPTER_CONFIG)
    where = str(checkpoint / ADAPTER_CONFIG)
    for key in ("rank_pattern", "alpha_pattern"):
        if adapter_cfg.get(key):
            raise ConversionError(f"{where}: key {key!r} (per-module ranks) is not supported")
    scale = lora_scale(
        _need(adapter_cfg, "r", where),
        _need(adapter_cfg, "lora_alpha", where),
        adapter_cfg.get("use_rslora", False),
        where,
    )
    lora = strip_peft_prefix(load_file(adapter), str(adapter))
    trained = strip_peft_prefix(_load_pth(non_lora), str(non_lora))
    state = {**base_state, **{k.replace(".base_layer.", "."): v for k, v in trained.items()}}
    return merge_lora({**state, **lora}, scale, str(adapter))


def _spec(cfg: dict, token_ids: list[int], text: str, base: str) -> RewardSpec:
    data, model = cfg["data_config"], cfg["model_config"]
    eval_dim = data["eval_dim"] if isinstance(data["eval_dim"], list) else [data["eval_dim"]]
    if data.get("sample_type", "uniform") != "uniform":
        raise ConversionError(
            f"{MODEL_CONFIG}: data_config.sample_type {data['sample_type']!r}: only 'uniform' is reproduced"
        )
    pooling = "special" if model.get("use_special_tokens") else model.get("reward_token", "last")
    if pooling == "mean":
        raise ConversionError(
            f"{MODEL_CONFIG}: model_config.reward_token 'mean': VideoAlign averages the positions before the "
            "last token, vlmrm's mean includes it; not converted"
        )
    sampling = FrameSampling(
        fps=data.get("fps", 2.0),
        num_frames=int(data["num_frames"]) if data.get("num_frames") is not None else None,
        max_pixels=_need(data, "max_frame_pixels", f"{MODEL_CONFIG} data_config"),
        total_pixels=VIDEOALIGN_TOTAL_PIXELS,
        frame_rounding="round",
    )
    normalization = None
    stats = cfg.get("inference_config")
    if stats:
        normalization = {
            dim: {
                "mean": float(_need(stats, f"{dim}_mean", f"{MODEL_CONFIG} inference_config")),
                "std": float(_need(stats, f"{dim}_std", f"{MODEL_CONFIG} inference_config")),
            }
            for dim in eval_dim
        }
    return RewardSpec(
        eval_dim=eval_dim,
        output_dim=_need(model, "output_dim", f"{MODEL_CONFIG} model_config"),
        reward_token=pooling,
        reward_token_ids=token_ids if pooling == "special" else [],
        prompt_template_type=data.get("prompt_template_type", "none"),
        prompt_template_text=text,
        video_position="before_text",
        base_model_name_or_path=base,
        sampling={**sampling.__dict__, "video_backend": "auto"},
        normalization=normalization,
        rope_positions="sequential",
    )


def _check_special_order(text: str, eval_dim: list[str]) -> None:
    """VideoAlign reads its head outputs in the order the reward tokens appear in the text; vlmrm
    by dimension. They agree when the template writes the tokens in ``eval_dim`` order, once each."""
    if set(eval_dim) - set(VIDEOALIGN_DIMENSIONS) or len(eval_dim) != len(VIDEOALIGN_DIMENSIONS):
        raise ConversionError(
            f"{MODEL_CONFIG}: data_config.eval_dim {eval_dim} with special tokens: VideoAlign pools exactly "
            f"its tokens {list(VIDEOALIGN_DIMENSIONS)}"
        )
    positions = []
    for dim in eval_dim:
        if text.count(reward_token(dim)) != 1:
            raise ConversionError(
                f"prompt template: {reward_token(dim)} must appear once (VideoAlign pools it)"
            )
        positions.append(text.index(reward_token(dim)))
    if positions != sorted(positions):
        raise ConversionError(f"prompt template: reward tokens are not in eval_dim order {eval_dim}")


def convert_videoalign(
    src: str | Path,
    out: str | Path,
    base_model: str | Path | None = None,
    videoalign_repo: str | Path | None = None,
    step: int | None = None,
) -> Path:
    """Write a vlmrm reward checkpoint to ``out`` from the VideoAlign run folder ``src``."""
    src, out = Path(src), Path(out)
    cfg = _read_json(src / MODEL_CONFIG)
    for section in ("data_config", "model_config", "peft_lora_config"):
        _need(cfg, section, str(src / MODEL_CONFIG))
    base = str(
        base_model or _need(cfg["model_config"], "model_name_or_path", f"{src / MODEL_CONFIG} model_config")
    )
    checkpoint = find_checkpoint(src, step)
    eval_dim = _need(cfg["data_config"], "eval_dim", f"{src / MODEL_CONFIG} data_config")
    eval_dim = eval_dim if isinstance(eval_dim, list) else [eval_dim]
    text = template_text(
        cfg["data_config"].get("prompt_template_type", "none"),
        eval_dim,
        Path(videoalign_repo) if videoalign_repo else None,
    )

    processor = AutoProcessor.from_pretrained(base)
    special = bool(cfg["model_config"].get("use_special_tokens"))
    token_ids = []
    if special:
        _check_special_order(text, eval_dim)
        all_ids = add_reward_tokens(processor, list(VIDEOALIGN_DIMENSIONS))
        saved = checkpoint / TOKENIZER_DIR
        if saved.is_dir():
            saved_ids = AutoTokenizer.from_pretrained(saved).convert_tokens_to_ids(
                [reward_token(d) for d in VIDEOALIGN_DIMENSIONS]
            )
            if saved_ids != all_ids:
                raise ConversionError(
                    f"{saved}: reward token ids {saved_ids} differ from {all_ids} added to {base}'s tokenizer "
                    "(is --base_model the model VideoAlign trained from?)"
                )
        token_ids = [all_ids[VIDEOALIGN_DIMENSIONS.index(d)] for d in eval_dim]
    spec = _spec(cfg, token_ids, text, base)

    config = AutoConfig.from_pretrained(base)
    attach_spec(config, spec)
    cls = reward_model_class(config.model_type)
    model = cls.from_pretrained(base, config=config, dtype="auto")
    if special and len(processor.tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(processor.tokenizer), mean_resizing=False)
    renaming = get_model_conversion_mapping(model)
    renamings = [t for t in renaming if isinstance(t, WeightRenaming)]
    converters = [t for t in renaming if isinstance(t, WeightConverter)]
    expected = model.state_dict()
    legacy_base = _legacy_names(expected, model)
    weights = videoalign_weights(checkpoint, cfg["peft_lora_config"], legacy_base)
    where = str(checkpoint / (FULL_WEIGHTS if (checkpoint / FULL_WEIGHTS).is_file() else NON_LORA_WEIGHTS))
    head = weights.pop(VIDEOALIGN_HEAD, None)
    if head is None:
        raise ConversionError(f"{where}: key {VIDEOALIGN_HEAD!r} (the reward head) missing")
    state = {}
    for key, tensor in weights.items():
        new = rename_source_key(key, renamings, converters)[0]
        if new not in expected:
            raise ConversionError(
                f"{where}: key {key!r} ({new!r} in transformers 5) is not a {cls.__name__} weight"
            )
        tensor = _pad_vocabulary_rows(tensor, expected[new])
        if tuple(tensor.shape) != tuple(expected[new].shape):
            raise ConversionError(
                f"{where}: key {key!r} has shape {tuple(tensor.shape)}, the model {tuple(expected[new].shape)}"
            )
        state[new] = tensor.to(expected[new].dtype)
    state[f"{VLMRM_HEAD}.weight"] = head.to(expected[f"{VLMRM_HEAD}.weight"].dtype)
    state[f"{VLMRM_HEAD}.bias"] = torch.zeros_like(expected[f"{VLMRM_HEAD}.bias"])
    tied = set(model.get_expanded_tied_weights_keys())
    missing = sorted(set(expected) - set(state) - tied)
    if missing:
        raise ConversionError(f"{where}: weights missing for {missing[:5]}")
    model.load_state_dict(state, strict=False)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _pad_vocabulary_rows(tensor: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """VideoAlign resized the vocabulary to the tokenizer length, which shrinks Qwen2-VL's matrices
    (151936 -> 151660 rows); rows past the tokenizer are never read, so the base model's are kept
    there and the checkpoint keeps the backbone's shape (as vlmrm's own reward-token setup does),
    which ``init_from`` needs."""
    rows = tensor.shape[0]
    if tensor.ndim == 2 and rows < target.shape[0] and tensor.shape[1] == target.shape[1]:
        return torch.cat([tensor.to(target.dtype), target[rows:]])
    return tensor


def _legacy_names(expected: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """The base model's weights under transformers-4.45 names (``model.language_model.X`` -> ``model.X``,
    ``model.visual.X`` -> ``visual.X``), so the adapter layout can fill what VideoAlign did not save."""
    legacy = {}
    for key, tensor in expected.items():
        if key.startswith("rm_head."):
            continue
        if key.startswith("model.language_model."):
            key = "model." + key[len("model.language_model.") :]
        elif key.startswith("model.visual."):
            key = key[len("model.") :]
        legacy[key] = tensor
    return legacy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vlmrm.convert videoalign", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--src", required=True, help="VideoAlign run folder (model_config.json, checkpoint-N/)"
    )
    parser.add_argument("--out", required=True, help="folder for the vlmrm reward checkpoint")
    parser.add_argument(
        "--base_model", help="backbone VideoAlign trained from (default: model_config.json's)"
    )
    parser.add_argument("--videoalign_repo", help="a VideoAlign clone: its prompt_template.py text is stored")
    parser.add_argument("--step", type=int, help="checkpoint-N to convert (default: the highest N)")
    args = parser.parse_args(argv)
    try:
        path = convert_videoalign(args.src, args.out, args.base_model, args.videoalign_repo, args.step)
    except ConversionError as error:
        parser.exit(2, f"error: {error}\n")
    print(f"wrote {path}")
    return 0
