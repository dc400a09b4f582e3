"""Build a reward model from a backbone for training; load a saved reward checkpoint back.

``build_reward_model`` takes the user's ``model_name_or_path`` through the family class'
``from_pretrained`` (so DeepSpeed ZeRO-3 partitions it while loading, as for any HF model);
``load_reward_model`` is the one call that loads any vlmrm checkpoint — a full model, a PEFT
adapter + head, or one written under DeepSpeed ZeRO-2/3 (Trainer gathers those into full weights).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoProcessor, ProcessorMixin
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from vlmrm.media.sampling import FrameSampling
from vlmrm.modeling.reward_model import RewardSpec, attach_spec, reward_model_class, reward_token, spec_of

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_dtype(torch_dtype: str, bf16: bool = False, fp16: bool = False) -> torch.dtype:
    """``auto`` follows the mixed-precision flags (bf16 -> bfloat16, fp16 -> float32 master weights)."""
    if torch_dtype != "auto":
        return DTYPES[torch_dtype]
    return torch.bfloat16 if bf16 else torch.float32


def add_reward_tokens(processor: ProcessorMixin, eval_dim: list[str]) -> list[int]:
    """Add ``<|DIM_reward|>`` special tokens (idempotent); return their ids in ``eval_dim`` order."""
    tokenizer = processor.tokenizer
    tokens = [reward_token(dim) for dim in eval_dim]
    tokenizer.add_tokens(tokens, special_tokens=True)
    return tokenizer.convert_tokens_to_ids(tokens)


def init_reward_token_rows(model, token_ids: list[int], num_original: int) -> None:
    """Make room for the new tokens and start their embeddings at the mean of the original rows.

    Released Qwen checkpoints have spare embedding rows beyond the tokenizer (151936 vs 151657),
    so the matrix only grows when a new id does not fit; it never shrinks.
    """
    needed = max(token_ids) + 1
    if needed > model.config.get_text_config().vocab_size:
        model.resize_token_embeddings(needed, mean_resizing=False)
    embeddings = model.get_input_embeddings()
    with torch.no_grad(), gathered_for_update(embeddings.weight):
        mean = embeddings.weight[:num_original].float().mean(dim=0)
        for token_id in token_ids:
            embeddings.weight[token_id] = mean.to(embeddings.weight.dtype)


def gathered_for_update(parameter):
    """Under ZeRO-3 a parameter is partitioned across ranks (local shape 0): gather it to edit it on
    rank 0, DeepSpeed re-partitions and broadcasts on exit. A no-op otherwise."""
    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters([parameter], modifier_rank=0)


def build_spec(model_cfg, data_cfg, training_args, reward_token_ids: list[int]) -> RewardSpec:
    sampling = FrameSampling.from_data_config(data_cfg)
    return RewardSpec(
        eval_dim=list(data_cfg.eval_dim),
        output_dim=model_cfg.output_dim,
        reward_token=model_cfg.reward_token,
        reward_head=model_cfg.reward_head,
        reward_token_ids=reward_token_ids,
        tie_k=training_args.tie_k,
        learn_tie_k=training_args.learn_tie_k,
        prompt_template_type=data_cfg.prompt_template_type,
        video_position=data_cfg.video_position,
        image_size=data_cfg.image_size(),
        score_range=(training_args.score_min, training_args.score_max)
        if training_args.score_min is not None
        else None,
        max_length=training_args.max_length,
        base_model_name_or_path=model_cfg.model_name_or_path,
        sampling={**sampling.__dict__, "video_backend": data_cfg.video_backend},
        prompt_template_text=data_cfg.prompt_template_text(),
    )


def revision_kwargs(model_cfg) -> dict[str, str]:
    """``from_pretrained``'s ``revision`` when ``model_revision`` pins one (a Hub branch, tag or commit)."""
    return {"revision": model_cfg.model_revision} if model_cfg.model_revision else {}


def build_processor(model_cfg, data_cfg) -> tuple[ProcessorMixin, int, list[int]]:
    """The processor of a new run, (processor, tokenizer size before the reward tokens, their ids):
    with ``use_special_tokens`` the reward tokens are added, so lengths counted with it (validation)
    are the model's."""
    processor = AutoProcessor.from_pretrained(model_cfg.model_name_or_path, **revision_kwargs(model_cfg))
    num_original = len(processor.tokenizer)
    token_ids = add_reward_tokens(processor, data_cfg.eval_dim) if model_cfg.use_special_tokens else []
    return processor, num_original, token_ids


def build_reward_model(model_cfg, data_cfg, training_args):
    """Backbone from ``model_name_or_path`` + fresh head; returns (model, processor).

    With ``use_special_tokens`` the reward tokens are added to the processor's tokenizer first,
    so the saved processor and the model agree on their ids.
    """
    path = model_cfg.model_name_or_path
    revision = revision_kwargs(model_cfg)
    processor, num_original, token_ids = build_processor(model_cfg, data_cfg)
    spec = build_spec(
        model_cfg, data_cfg, training_args, token_ids if model_cfg.reward_token == "special" else []
    )
    config = AutoConfig.from_pretrained(path, **revision)
    attach_spec(config, spec)
    cls = reward_model_class(config.model_type)
    dtype = resolve_dtype(model_cfg.torch_dtype, training_args.bf16, training_args.fp16)
    model = cls.from_pretrained(
        path, config=config, dtype=dtype, attn_implementation=model_cfg.attn_implementation, **revision
    )
    if token_ids:
        init_reward_token_rows(model, token_ids, num_original)
    if model_cfg.init_from:
        load_reward_weights(model, model_cfg.init_from)
    return model, processor


def load_reward_weights(model, checkpoint: str | Path) -> None:
    """Fine-tune from an existing reward checkpoint: copy its weights into ``model`` (same shapes).

    The source's ``rope_positions`` is a property of its weights (a converted VideoAlign model
    was trained with ``sequential`` positions), so the run takes it over; a prompt template that
    differs from the source's is logged, since the run's config chose it.
    """
    source, _ = load_reward_model(checkpoint)
    source_spec, spec = source.reward_spec, model.reward_spec
    if source_spec.rope_positions != spec.rope_positions:
        logger.info("init_from %s: rope_positions %s, as the source", checkpoint, source_spec.rope_positions)
        spec.rope_positions = source_spec.rope_positions
        attach_spec(model.config, spec)
    if (source_spec.prompt_template_text, source_spec.prompt_template_type) != (
        spec.prompt_template_text,
        spec.prompt_template_type,
    ):
        logger.warning(
            "init_from %s: the source was trained with another prompt template (%s); this run uses %s",
            checkpoint,
            "its stored text" if source_spec.prompt_template_text else source_spec.prompt_template_type,
            "prompt_template_file" if spec.prompt_template_text else spec.prompt_template_type,
        )
    source = merge_adapter(source)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    if unexpected or any("rm_head" in k for k in missing):
        raise ValueError(
            f"init_from {checkpoint}: incompatible checkpoint (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    logger.info("initialised from reward checkpoint %s", checkpoint)


def saved_weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a full-model checkpoint (one file or the shards of an index); [] if none."""
    folder = Path(folder)
    if (folder / SAFE_WEIGHTS_NAME).is_file():
        return [folder / SAFE_WEIGHTS_NAME]
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return []


def load_saved_weights(model, folder: str | Path) -> None:
    """Load a full checkpoint written by ``save_pretrained`` into an existing ``model``, strictly.

    Why not ``load_state_dict(load_file(...))`` as HF Trainer does when it resumes or loads the
    best model: transformers 5 saves Qwen-VL weights in the released key layout
    (``model.layers.*``, ``visual.*``) and renames them only inside ``from_pretrained``; a plain
    load then matches no backbone key and silently keeps the current weights. Here every key goes
    through the model's own conversion mapping first, as ``from_pretrained`` does.
    """
    files = saved_weight_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no {SAFE_WEIGHTS_NAME} or {SAFE_WEIGHTS_INDEX_NAME}")
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    state = {}
    for file in files:
        for key, tensor in load_file(file, device="cpu").items():
            state[rename_source_key(key, renamings, converters)[0]] = tensor
    expected = model.state_dict()
    tied = {k for k in expected if k not in state and _is_tied(model, k)}
    missing = sorted(set(expected) - set(state) - tied)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{folder}: checkpoint does not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.load_state_dict(state, strict=False)


def _is_tied(model, key: str) -> bool:
    """Tied weights (e.g. ``lm_head.weight`` = embeddings) are saved once; the copy may be absent."""
    return key in model.get_expanded_tied_weights_keys()


def merge_adapter(model):
    """A PEFT-wrapped model with its LoRA weights merged in; other models unchanged."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


HEAD_KEY_PATTERN = r"(^|\.)rm_head\."
"""State-dict keys of the reward head (``rm_head.*``, also under PEFT's prefixes)."""


def adapter_weight_file(folder: Path) -> Path:
    """The adapter's weights as PEFT saves them (safetensors, else the torch pickle)."""
    from peft.utils import SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME

    safetensors = folder / SAFETENSORS_WEIGHTS_NAME
    return safetensors if safetensors.is_file() else folder / WEIGHTS_NAME


def check_adapter_has_head(folder: Path) -> None:
    """An adapter checkpoint carries the trained head (PEFT ``modules_to_save``); one without it
    would score with a random head, so it is an error, named, before anything loads."""
    weights = adapter_weight_file(folder)
    if not weights.is_file():
        raise FileNotFoundError(f"{folder}: adapter checkpoint without its weights ({weights.name})")
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            keys = list(handle.keys())
    else:
        keys = list(torch.load(weights, map_location="cpu", weights_only=True))
    if not any(re.search(HEAD_KEY_PATTERN, key) for key in keys):
        raise ValueError(
            f"{folder}: the adapter has no reward head weights (rm_head); it was not saved by a vlmrm "
            "reward run (its LoRA config must list rm_head in modules_to_save)"
        )


@contextlib.contextmanager
def head_loaded_later(cls):
    """Loading a backbone into a reward class leaves ``rm_head`` newly initialised, which transformers
    reports as MISSING; when the adapter's head is loaded right after (checked first by
    :func:`check_adapter_has_head`) that report is false, so the head's keys are ignored as missing
    for this one load. Any other missing key is still reported."""
    before = cls.__dict__.get("_keys_to_ignore_on_load_missing")
    cls._keys_to_ignore_on_load_missing = [*(cls._keys_to_ignore_on_load_missing or []), HEAD_KEY_PATTERN]
    try:
        yield
    finally:
        if before is None:
            del cls._keys_to_ignore_on_load_missing
        else:
            cls._keys_to_ignore_on_load_missing = before


def load_reward_model(
    path: str | Path,
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = None,
    base_model=None,
    base_path: str | Path | None = None,
):
    """Load any vlmrm reward checkpoint; returns (model, processor) ready for ``model(**batch)``.

    Adapter checkpoints (``adapter_config.json`` present) rebuild the backbone from ``base_path``
    (default: the spec's ``base_model_name_or_path``) — or take ``base_model``, an already loaded
    one, so an evaluation over many adapter checkpoints loads the backbone once — and attach the
    saved LoRA weights, head and reward-token rows. An adapter without a head is an error; the
    backbone's load does not report the head as missing, since the adapter brings it
    (:func:`head_loaded_later`).
    """
    path = Path(path)
    config = AutoConfig.from_pretrained(path)
    spec = spec_of(config)
    if spec is None:
        raise ValueError(f"{path}: not a vlmrm reward checkpoint (config.json has no {'vlmrm'!r} entry)")
    processor = AutoProcessor.from_pretrained(path)
    cls = reward_model_class(config.model_type)
    kwargs = {"dtype": dtype or "auto"}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if not (path / ADAPTER_CONFIG).is_file():
        return cls.from_pretrained(path, **kwargs).eval(), processor
    from peft import PeftModel

    check_adapter_has_head(path)
    base = base_model
    if base is None:
        base_path = base_path or spec.base_model_name_or_path
        base_config = AutoConfig.from_pretrained(base_path)
        attach_spec(base_config, spec)
        with head_loaded_later(cls):
            base = cls.from_pretrained(base_path, config=base_config, **kwargs)
    else:
        attach_spec(base.config, spec)
    if spec.reward_token_ids or len(processor.tokenizer) > base.get_input_embeddings().weight.shape[0]:
        needed = max(len(processor.tokenizer), base.get_input_embeddings().weight.shape[0])
        base.resize_token_embeddings(needed, mean_resizing=False)
    model = PeftModel.from_pretrained(base, path)
    return model.eval(), processor
