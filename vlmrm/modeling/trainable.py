"""Which parameters train, at which learning rate: freezing, LoRA, reward-token rows, groups.

Every parameter belongs to one module group, named by where it sits in the (shared) Qwen-VL
layout — ``model.visual`` (ViT + merger), ``model.language_model``, ``lm_head`` — or in the reward
head. The groups drive freezing (VideoAlign's ``freeze_vision_tower`` / ``tune_merger`` /
``freeze_llm``), the optimizer's per-group learning rates and the parameter summary.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import torch
from torch import nn

from vlmrm.modeling.families import ModelFamily

logger = logging.getLogger(__name__)

GROUPS = ("vision", "merger", "llm", "embedding", "head", "lm_head")
PEFT_WRAPPER_PREFIX = "base_model.model."


def module_group(name: str, family: ModelFamily) -> str:
    """Group of a parameter name (plain or PEFT-wrapped)."""
    name = name.removeprefix(PEFT_WRAPPER_PREFIX)
    if name.startswith("rm_head."):
        return "head"
    if name.startswith("lm_head."):
        return "lm_head"
    if name.startswith("model.visual."):
        child = name.removeprefix("model.visual.").split(".", 1)[0]
        return "merger" if child in family.merger_modules else "vision"
    if ".embed_tokens." in name:
        return "embedding"
    return "llm"


def _set_group_trainable(model: nn.Module, family: ModelFamily, trainable: dict[str, bool]) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(trainable[module_group(name, family)])


def _embeddings_tied(model) -> bool:
    lm_head = getattr(model, "lm_head", None)
    return lm_head is not None and lm_head.weight is model.get_input_embeddings().weight


def group_trainability(model_cfg) -> dict[str, bool]:
    """VideoAlign semantics: the merger trains with the vision tower, or alone with ``tune_merger``."""
    vision = not model_cfg.freeze_vision_tower
    return {
        "vision": vision,
        "merger": vision or model_cfg.tune_merger,
        "llm": not model_cfg.freeze_llm,
        "embedding": not model_cfg.freeze_llm,
        "head": True,
        "lm_head": False,  # never used by the reward forward; trainable it would idle DDP buckets
    }


def restrict_embedding_grad(embedding: nn.Embedding, token_ids: list[int]) -> None:
    """Train only the reward-token rows: a gradient mask zeroes every other row's gradient.

    With zero gradients and weight decay 0 (see :func:`optimizer_param_groups`) AdamW leaves those
    rows bit-identical, so no weights need restoring after a step.
    """
    mask = torch.zeros(embedding.weight.shape[0], 1, dtype=embedding.weight.dtype)
    mask[token_ids] = 1
    embedding.weight.requires_grad_(True)
    embedding.weight.register_hook(lambda grad: grad * mask.to(device=grad.device, dtype=grad.dtype))


def lora_target_modules(model: nn.Module, model_cfg, family: ModelFamily) -> list[str]:
    """Linear layers of the LLM (and of the ViT with ``vision_lora``) that get LoRA adapters.

    Names containing a fragment of ``lora_namespan_exclude`` are skipped; with
    ``num_lora_modules = N > 0`` only the last N (in module order) are kept.
    """
    targets = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        group = module_group(name + ".weight", family)
        wanted = group == "llm" or (group == "vision" and model_cfg.vision_lora)
        if wanted and not any(fragment in name for fragment in model_cfg.lora_namespan_exclude):
            targets.append(name)
    if model_cfg.num_lora_modules > 0:
        targets = targets[-model_cfg.num_lora_modules :]
    if not targets:
        raise ValueError("lora_enable: no Linear layer left to adapt (check lora_namespan_exclude)")
    return targets


def configure_trainable(model, model_cfg, family: ModelFamily, reward_token_ids: list[int]):
    """Apply freezing / LoRA / reward-token training; returns the model to train (maybe a PeftModel)."""
    trainable = group_trainability(model_cfg)
    tied = _embeddings_tied(model)
    if tied:
        trainable["lm_head"] = trainable["embedding"]
    if model_cfg.lora_enable:
        from peft import LoraConfig, get_peft_model

        modules_to_save = ["rm_head", *(model_cfg.lora_modules_to_save or [])]
        if trainable["vision"] and not model_cfg.vision_lora:
            modules_to_save.append("visual")
        elif trainable["merger"]:
            modules_to_save.extend(family.merger_modules)
        lora_config = LoraConfig(
            r=model_cfg.lora_r,
            lora_alpha=model_cfg.lora_alpha,
            lora_dropout=model_cfg.lora_dropout,
            use_rslora=model_cfg.use_rslora,
            target_modules=lora_target_modules(model, model_cfg, family),
            modules_to_save=modules_to_save,
            trainable_token_indices={"embed_tokens": list(reward_token_ids)} if reward_token_ids else None,
        )
        return get_peft_model(model, lora_config)
    _set_group_trainable(model, family, trainable)
    if reward_token_ids and not trainable["embedding"]:
        restrict_embedding_grad(model.get_input_embeddings(), reward_token_ids)
    return model


GROUP_LR_FIELDS = {
    "vision": "vision_lr",
    "merger": "merger_lr",
    "head": "head_lr",
    "reward_tokens": "special_token_lr",
}
"""Optimizer group -> the training argument holding its learning rate (unset = ``learning_rate``)."""


def _learning_rate(label: str, args) -> float:
    rate = getattr(args, GROUP_LR_FIELDS[label]) if label in GROUP_LR_FIELDS else None
    return args.learning_rate if rate is None else rate


def optimizer_param_groups(
    model, args, family: ModelFamily, decay_names: set[str], frozen_llm: bool
) -> list[dict]:
    """Trainable parameters split by (group, learning rate, weight decay).

    Reward-token rows under a frozen LLM get ``special_token_lr`` and no weight decay (decay would
    shrink the frozen rows even with a zero gradient).
    """
    buckets: dict[tuple[str, float, float], list[nn.Parameter]] = defaultdict(list)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = module_group(name, family)
        special_rows = "trainable_tokens" in name or (group == "embedding" and frozen_llm)
        label = "reward_tokens" if special_rows else group
        decay = 0.0 if special_rows or name not in decay_names else args.weight_decay
        buckets[(label, _learning_rate(label, args), decay)].append(param)
    return [
        {"params": params, "lr": lr, "weight_decay": decay, "group_name": label}
        for (label, lr, decay), params in buckets.items()
    ]


def parameter_summary(model, family: ModelFamily) -> str:
    """Trainable / frozen parameter counts per module group, for the start-of-training log."""
    counts = {group: [0, 0] for group in (*GROUPS, "lora")}
    for name, param in model.named_parameters():
        group = "lora" if "lora_" in name else module_group(name, family)
        counts[group][0 if param.requires_grad else 1] += param.numel()
    lines = [f"{'group':<10} {'trainable':>14} {'frozen':>14}"]
    for group, (on, off) in counts.items():
        if on or off:
            lines.append(f"{group:<10} {on:>14,} {off:>14,}")
    total_on = sum(c[0] for c in counts.values())
    total_off = sum(c[1] for c in counts.values())
    lines.append(f"{'total':<10} {total_on:>14,} {total_off:>14,}")
    return "\n".join(lines)
