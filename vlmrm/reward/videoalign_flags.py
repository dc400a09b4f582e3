"""VideoAlign's ``train.sh`` flags in a vlmrm reward YAML: each accepted with its meaning or refused.

A VideoAlign user writes their ``train.sh`` flags as YAML keys. Most keys are ours under the same
name and meaning (:data:`SAME_KEYS`); the others are in :data:`VIDEOALIGN_FLAGS`, one row per key:
what vlmrm key it sets (and how its value maps), or the refusal naming our equivalent. The table is
applied by the config loader (``Layout.translate``) before anything is built, so a refused key fails
in seconds, and docs/migration.md shows the same table (:func:`flag_table_markdown`; a test
compares). Values VideoAlign uses as "off" (``add_noise: false``, ``load_in_4bit: false``) mean what
vlmrm does anyway and are accepted; anything else of a refused key is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrm.core.config import ConfigError

VIDEOALIGN_EVAL_SPLIT = 0.02
"""VideoAlign's held-out fraction when ``conduct_eval`` is on and no test CSV is given
(``train_test_split(test_size=0.02)``)."""
VIDEOALIGN_CONSTANT_MARGIN = 0.57
"""The margin of VideoAlign's ``loss_type: constant_margin``: -log sigmoid(r_chosen - r_rejected - 0.57)."""
CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)$")


@dataclass(frozen=True)
class Flag:
    """One VideoAlign key.

    ``ours``: the vlmrm key(s) it becomes, or our nearest equivalent when refused; ``meaning``: what
    it does in VideoAlign and here. ``keeps``: the values accepted (None: any); another value is
    refused. ``apply(value, context)``: the vlmrm keys and values it sets (``context``: the whole
    YAML mapping); None: an accepted value sets nothing (it means what vlmrm does anyway).
    """

    ours: str
    meaning: str
    apply: Callable[[Any, dict], dict] | None = None
    keeps: tuple | None = None


def _rename(ours: str, values: dict | None = None) -> Callable[[Any, dict], dict]:
    def apply(value: Any, context: dict) -> dict:
        if values is not None and value not in values:
            raise ConfigError(f"expected one of {', '.join(map(repr, values))}, got {value!r}")
        return {ours: values[value] if values is not None else value}

    return apply


def latest_checkpoint(folder: str | Path, step: int | None = None) -> str:
    """VideoAlign's ``load_model_from_checkpoint`` folder rule: ``checkpoint-<step>`` under ``folder``
    when given (the latest one when absent or missing), else the folder itself (a vlmrm checkpoint)."""
    root = Path(folder)
    found = {
        int(m.group(1)): child
        for child in (root.iterdir() if root.is_dir() else [])
        if (m := CHECKPOINT_DIR.match(child.name))
    }
    if not found:
        return str(root)
    return str(found[step] if step in found else found[max(found)])


def _load_from_pretrained(value: Any, context: dict) -> dict:
    if value is None:
        return {}
    return {"init_from": latest_checkpoint(value, context.get("load_from_pretrained_step"))}


def _load_from_pretrained_step(value: Any, context: dict) -> dict:
    if value is not None and context.get("load_from_pretrained") is None:
        raise ConfigError("needs load_from_pretrained (the folder holding checkpoint-N)")
    return {}


def _conduct_eval(value: Any, context: dict) -> dict:
    if value is True and not context.get("meta_data_test") and context.get("eval_split_ratio") is None:
        return {"eval_split_ratio": VIDEOALIGN_EVAL_SPLIT}
    if value is False and context.get("meta_data_test"):
        raise ConfigError(
            "false with meta_data_test: vlmrm evaluates whenever a held-out set is given; drop one"
        )
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}")
    return {}


def _use_special_tokens(value: Any, context: dict) -> dict:
    """VideoAlign reads the reward tokens whenever it adds them (its model sets reward_token to
    'special' when special_token_ids is given): do the same when reward_token is not written; an
    explicit 'last' / 'mean' beside them is ambiguous (VideoAlign would silently ignore it)."""
    if value is not True:
        return {"use_special_tokens": value}
    token = context.get("reward_token")
    if token is None:
        return {"use_special_tokens": True, "reward_token": "special"}
    if token != "special":
        raise ConfigError(
            f"true with reward_token {token!r} is ambiguous: VideoAlign reads the reward tokens whenever "
            "they are added (its reward_token is then ignored); set reward_token: special, or drop "
            f"use_special_tokens to read the {token} position"
        )
    return {"use_special_tokens": True}


def _loss_type(value: Any, context: dict) -> dict:
    """VideoAlign's two extra losses; any other value is ours to check (its choices are listed)."""
    if value == "scaled":
        raise ConfigError("'scaled' (-m log sigmoid(r_chosen - r_rejected)) is not implemented")
    if value != "constant_margin":
        return {"loss_type": value}
    if context.get("margin") not in (None, VIDEOALIGN_CONSTANT_MARGIN):
        raise ConfigError(
            f"constant_margin is margin {VIDEOALIGN_CONSTANT_MARGIN}, but margin: {context['margin']} is given"
        )
    return {"loss_type": "margin", "margin": VIDEOALIGN_CONSTANT_MARGIN}


VIDEOALIGN_FLAGS: dict[str, Flag] = {
    "disable_flash_attn2": Flag(
        "attn_implementation",
        "true: sdpa, false: flash_attention_2 (VideoAlign's default; needs the flash-attn package)",
        _rename("attn_implementation", {True: "sdpa", False: "flash_attention_2"}),
    ),
    "load_from_pretrained": Flag(
        "init_from",
        "start from a trained reward model: its checkpoint-N folder, N = load_from_pretrained_step (the "
        'latest when unset); a VideoAlign checkpoint is converted first (docs/migration.md, "VideoAlign checkpoints")',
        _load_from_pretrained,
    ),
    "load_from_pretrained_step": Flag(
        "init_from", "the N of the checkpoint-N folder of load_from_pretrained", _load_from_pretrained_step
    ),
    "conduct_eval": Flag(
        "meta_data_test / eval_split_ratio",
        "true without meta_data_test: a seeded 2 % held-out split (eval_split_ratio: 0.02); false: no "
        "evaluation (give no meta_data_test)",
        _conduct_eval,
    ),
    "use_special_tokens": Flag(
        "use_special_tokens + reward_token: special",
        "adds one reward token per dimension and reads the reward there; with reward_token last/mean "
        "written too it is refused as ambiguous",
        _use_special_tokens,
    ),
    "sample_type": Flag(
        "sample_type: uniform or random",
        "uniform is the same; multi_pts (4 windows of 6 frames from an 8 fps resampling) is not "
        "implemented: the nearest is sample_type: uniform with num_frames: 24",
        _rename("sample_type"),
        keeps=("uniform", "random"),
    ),
    "loss_type": Flag(
        "loss_type: bt, btt, margin or reg",
        "the same four losses; constant_margin is loss_type: margin with margin: 0.57; scaled "
        "(-m log sigmoid(d)) is not implemented",
        _loss_type,
    ),
    "lora_target_modules": Flag(
        "lora_namespan_exclude, num_lora_modules",
        "VideoAlign ignores it (its LoRA targets are every Linear/Embedding not matching "
        "lora_namespan_exclude, the last num_lora_modules); vlmrm uses the same two keys",
        keeps=(None,),
    ),
    "lora_task_type": Flag(
        "(none)",
        "VideoAlign's CAUSAL_LM wrapping is what vlmrm does (the reward head is saved with the "
        "adapters); other PEFT task types do not apply to a reward model",
        keeps=("CAUSAL_LM",),
    ),
    "trust_remote_code": Flag(
        "(none)",
        "vlmrm loads the Qwen-VL families it knows with transformers' own classes, never remote code",
        keeps=(False,),
    ),
    "load_in_8bit": Flag(
        "lora_enable + bf16 + DeepSpeed ZeRO",
        "quantised (bitsandbytes) training is not supported; save memory with LoRA, bf16 and ZeRO-3",
        keeps=(False,),
    ),
    "load_in_4bit": Flag(
        "lora_enable + bf16 + DeepSpeed ZeRO",
        "quantised (bitsandbytes) training is not supported; save memory with LoRA, bf16 and ZeRO-3",
        keeps=(False,),
    ),
    "bnb_4bit_quant_type": Flag(
        "(none)", "only read with load_in_4bit, which is not supported", keeps=("nf4", "fp4")
    ),
    "use_bnb_nested_quant": Flag(
        "(none)", "only read with load_in_4bit, which is not supported", keeps=(False,)
    ),
    "add_noise": Flag(
        "(none)", "VideoAlign's noise augmentation of frames is not implemented in vlmrm", keeps=(False,)
    ),
    "p_shuffle_frames": Flag(
        "(none)", "VideoAlign's frame-shuffling augmentation is not implemented in vlmrm", keeps=(0, 0.0)
    ),
    "p_color_jitter": Flag(
        "(none)", "VideoAlign's colour-jitter augmentation is not implemented in vlmrm", keeps=(0, 0.0)
    ),
    "dataset_num_proc": Flag(
        "dataloader_num_workers",
        "vlmrm decodes videos in the DataLoader workers, not in a datasets.map pass",
        keeps=(None,),
    ),
    "center_rewards_coefficient": Flag(
        "normalization_pairs",
        "TRL's reward-centring loss term is not implemented; vlmrm centres rewards after training with "
        "the stored per-dimension mean/std instead",
        keeps=(None,),
    ),
}
"""VideoAlign key -> how it lands in vlmrm (keys with our name and meaning are in :data:`SAME_KEYS`)."""

SAME_KEYS = (
    "model_name_or_path",
    "model_revision",
    "torch_dtype",
    "attn_implementation",
    "output_dim",
    "reward_token",
    "freeze_vision_tower",
    "freeze_llm",
    "tune_merger",
    "lora_enable",
    "vision_lora",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_namespan_exclude",
    "lora_modules_to_save",
    "use_rslora",
    "num_lora_modules",
    "meta_data",
    "meta_data_test",
    "data_dir",
    "max_frame_pixels",
    "num_frames",
    "fps",
    "eval_dim",
    "prompt_template_type",
    "use_tied_data",
    "max_length",
    "vision_lr",
    "merger_lr",
    "special_token_lr",
    "logging_epochs",
    "eval_epochs",
    "save_epochs",
    "remove_unused_columns",
    "save_full_model",
)
"""VideoAlign keys vlmrm reads under the same name with the same meaning (``TrainingArguments`` keys
such as ``learning_rate`` or ``deepspeed`` are the same class in both and not listed)."""


def translate_videoalign(mapping: dict, context: dict) -> dict:
    """``mapping`` with every VideoAlign-only key replaced by the vlmrm keys it means, or a
    :class:`ConfigError` naming the key and our equivalent. A vlmrm key set both directly and
    through a VideoAlign key must agree (a null, as VideoAlign's unset defaults, is not a value)."""
    out = {key: value for key, value in mapping.items() if key not in VIDEOALIGN_FLAGS}
    for key, value in mapping.items():
        flag = VIDEOALIGN_FLAGS.get(key)
        if flag is None:
            continue
        if flag.keeps is not None and value not in flag.keeps:
            raise ConfigError(f"{key}: {value!r} is not supported: {flag.meaning} (vlmrm: {flag.ours})", key)
        try:
            produced = flag.apply(value, context) if flag.apply is not None else {}
        except ConfigError as err:
            raise ConfigError(f"{key}: {err} (vlmrm: {flag.ours})", key) from None
        for ours, ours_value in produced.items():
            given = mapping.get(ours) if ours != key else None
            if given is not None and given != ours_value:
                raise ConfigError(
                    f"{key}: sets {ours}: {ours_value!r}, but {ours}: {given!r} is given too; keep one", key
                )
            out[ours] = ours_value
    return out


def flag_table_markdown() -> str:
    """The migration table of docs/migration.md, generated from :data:`VIDEOALIGN_FLAGS`."""
    rows = ["| VideoAlign key | vlmrm | accepted values | meaning |", "|---|---|---|---|"]
    for key, flag in VIDEOALIGN_FLAGS.items():
        keeps = "any" if flag.keeps is None else ", ".join(f"`{json.dumps(v)}`" for v in flag.keeps)
        rows.append(f"| `{key}` | {flag.ours} | {keeps} | {flag.meaning} |")
    return "\n".join(rows)
