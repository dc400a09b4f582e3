"""The VTG policy: a Qwen-VL generation model, optional temporal tokens, LoRA adapters.

Saved the way PEFT and transformers save (adapter + processor, or full weights) plus
``vtg_run.json`` (base model, temporal and video sections), so GRPO and evaluation rebuild the same
model, prompt and answer format from the folder alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from vlmrm.core.config import build_section
from vlmrm.modeling.generation import load_base
from vlmrm.modeling.loading import DTYPES
from vlmrm.vtg.data_config import TemporalSection, VideoSection
from vlmrm.vtg.time_encoding import add_temporal_tokens

RUN_FILE = "vtg_run.json"
ADAPTER_CONFIG = "adapter_config.json"


def load_policy(model_section, temporal: TemporalSection, processor):
    """Base model with the configured temporal tokens added to ``processor`` (rows initialised)."""
    model = load_base(model_section)
    token_ids = []
    if temporal.use_temporal_tokens:
        token_ids = add_temporal_tokens(
            processor, model, temporal.embedding_init_strategy, temporal.num_temporal_tokens
        )
    return model, token_ids


def save_run(folder: str | Path, model_section, temporal: TemporalSection, video: VideoSection) -> None:
    record = {
        "base_model": model_section.name_or_path,
        "torch_dtype": model_section.torch_dtype,
        "attn_implementation": model_section.attn_implementation,
        "temporal": asdict(temporal),
        "video": asdict(video),
    }
    (Path(folder) / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")


def read_run(folder: str | Path) -> dict:
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {RUN_FILE}; not a vlmrm VTG checkpoint")
    record = json.loads(path.read_text())
    record["temporal"] = build_section(TemporalSection, record["temporal"])
    record["video"] = build_section(VideoSection, record["video"])
    return record


def load_trained(folder: str | Path, is_trainable: bool = False, dtype: torch.dtype | None = None):
    """(model, processor, run record) of a VTG output folder: the base model grown to the saved
    tokenizer, then the adapter (or the full weights when there is no adapter)."""
    folder = Path(folder)
    run = read_run(folder)
    processor = AutoProcessor.from_pretrained(folder)
    kwargs = {"attn_implementation": run["attn_implementation"]}
    kwargs["dtype"] = dtype or ("auto" if run["torch_dtype"] == "auto" else DTYPES[run["torch_dtype"]])
    if not (folder / ADAPTER_CONFIG).is_file():
        return AutoModelForImageTextToText.from_pretrained(folder, **kwargs), processor, run
    from peft import PeftModel

    base = AutoModelForImageTextToText.from_pretrained(run["base_model"], **kwargs)
    if base.get_input_embeddings().weight.shape[0] < len(processor.tokenizer):
        base.resize_token_embeddings(len(processor.tokenizer))
    return PeftModel.from_pretrained(base, folder, is_trainable=is_trainable), processor, run
