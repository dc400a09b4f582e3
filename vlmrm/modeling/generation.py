"""Generation models (VTG policy, generative reward model): their ``model`` / ``lora`` config
sections, loading and LoRA wrapping, shared by the tasks that fine-tune a Qwen-VL model to answer
in text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import AutoModelForImageTextToText

from vlmrm.core.config import AT_LEAST_ONE, POSITIVE, PROBABILITY_BELOW_ONE, option
from vlmrm.modeling.loading import DTYPES


@dataclass
class ModelSection:
    name_or_path: str | None = option(None, "Base Qwen-VL checkpoint (hub id or local folder).", path=True)
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] = option("bfloat16", "Weights dtype.")
    attn_implementation: str = option("sdpa", "flash_attention_2 | sdpa | eager.")


@dataclass
class LoraSection:
    enabled: bool = option(True, "Train LoRA adapters (false: every LLM weight).")
    r: int = option(64, "LoRA rank.", bound=AT_LEAST_ONE)
    lora_alpha: int = option(128, "LoRA alpha (scale alpha / r).", bound=POSITIVE)
    lora_dropout: float = option(0.05, "Dropout on the LoRA input.", bound=PROBABILITY_BELOW_ONE)
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata={"help": "Module names (suffixes) that get adapters."},
    )


def load_base(model_section):
    """The base generation model (``AutoModelForImageTextToText``) of a ``model`` section."""
    dtype = "auto" if model_section.torch_dtype == "auto" else DTYPES[model_section.torch_dtype]
    return AutoModelForImageTextToText.from_pretrained(
        model_section.name_or_path, dtype=dtype, attn_implementation=model_section.attn_implementation
    )


def with_lora(model, lora, token_ids: list[int]):
    """LoRA on ``lora.target_modules``; new temporal-token rows train through PEFT's trainable
    tokens, in the input embeddings and (when not tied to them) the LM head."""
    from peft import LoraConfig, get_peft_model

    trainable = None
    if token_ids:
        trainable = {"embed_tokens": list(token_ids)}
        if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
            trainable["lm_head"] = list(token_ids)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=list(lora.target_modules),
        trainable_token_indices=trainable,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)
