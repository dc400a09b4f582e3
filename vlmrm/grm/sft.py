"""``task: grm_sft`` — supervised fine-tuning of a Qwen-VL generative reward model on the
conversations of :mod:`vlmrm.grm.convert` (loss on the gpt turns only; HF ``Trainer``).

    task: grm_sft
    model: {name_or_path, torch_dtype, attn_implementation}
    lora: {enabled, r, lora_alpha, lora_dropout, target_modules}   # enabled: false = full fine-tune
    training: {...}                        # HF TrainingArguments keys + the run keys (vlmrm.training.run)
    data:                                  # one or more converted files, mixed by weight
      - {path: t2i/sft.json, weight: 1.0}
      - {path: t2v/sft.json, weight: 0.5}
    max_length: 8192                       # longer samples are an error, never truncated
    video_fps: 2.0                         # videos without their own video_fps
    image_min_pixels / image_max_pixels / video_min_pixels / video_max_pixels / video_max_frames

The mix rule (``round(weight * n)`` examples per source per epoch) is in :mod:`vlmrm.grm.sft_data`.
Loaded by :func:`vlmrm.core.config.load_config` (nested layout; its grammar and path rule):
``--model.name_or_path X``, ``--max_length 4096`` (a top-level key), and any other flat
``--key value`` for ``training``. ``data[].path`` follows the path rule (working directory, else
this YAML's folder).

The output folder is what :class:`vlmrm.grm.engines.HFEngine` loads (rejection sampling,
``eval_rm.py`` with ``task: grm``): full weights or a PEFT adapter (transformers loads the base
named in ``adapter_config.json`` under it), the processor, and ``grm_run.json`` recording the mix.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import AutoProcessor

from vlmrm.core.config import AT_LEAST_ONE, POSITIVE, ConfigError, Layout, load_config, option
from vlmrm.core.paths import check_model_source
from vlmrm.grm.sft_data import GRMSFTCollator, GRMSFTDataset, MediaLimits, load_sft_files, mix_counts
from vlmrm.media.processor import image_factor
from vlmrm.media.sampling import DEFAULT_VIDEO_FPS
from vlmrm.modeling.generation import LoraSection, ModelSection, load_base, with_lora
from vlmrm.training.callbacks import EpochSetter
from vlmrm.training.run import early_stopping, prepare_run, start_training, with_run_metrics
from vlmrm.training.sft import GenerationSFTTrainer, SFTTrainingArguments

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 8192
"""Two 1024-token images or two short videos plus a CoT answer fit; raise it for long videos."""
RUN_FILE = "grm_run.json"
OUTPUT_HINT = "outputs/grm_sft"


@dataclass
class DataSource:
    path: str | None = option(None, "Converted SFT JSON (python -m vlmrm.grm.convert).", path=True)
    weight: float = option(1.0, "Examples per epoch = round(weight x examples in the file).", bound=POSITIVE)


@dataclass
class GRMSFTSections:
    task: Literal["grm_sft"] = option("grm_sft", "This job.")
    model: ModelSection = field(default_factory=ModelSection, metadata={"help": "Base model."})
    lora: LoraSection = field(default_factory=LoraSection, metadata={"help": "LoRA adapters."})
    training: dict = field(
        default_factory=dict,
        metadata={"help": "TrainingArguments keys and the run keys (vlmrm.training.run)."},
    )
    data: list[DataSource] = field(default_factory=list, metadata={"help": "SFT files and their weights."})
    max_length: int = option(
        DEFAULT_MAX_LENGTH, "Longest conversation in tokens; longer ones are an error.", bound=AT_LEAST_ONE
    )
    video_fps: float = option(
        DEFAULT_VIDEO_FPS, "Frames per second for videos without their own video_fps.", bound=POSITIVE
    )
    image_min_pixels: int | None = option(
        None, "Image pixel lower bound (None: the processor's).", bound=AT_LEAST_ONE
    )
    image_max_pixels: int | None = option(
        None, "Image pixel upper bound (None: the processor's).", bound=AT_LEAST_ONE
    )
    video_min_pixels: int | None = option(
        None,
        "Frame pixel lower bound (None: vlmrm.media.sampling's default).",
        bound=AT_LEAST_ONE,
    )
    video_max_pixels: int | None = option(
        None,
        "Frame pixel upper bound (None: vlmrm.media.sampling's default).",
        bound=AT_LEAST_ONE,
    )
    video_max_frames: int | None = option(
        None,
        "Most frames per video (None: vlmrm.media.sampling's default).",
        bound=AT_LEAST_ONE,
    )
    video_backend: str = option("auto", "torchcodec | decord | pyav | auto.")

    @property
    def media_limits(self) -> MediaLimits:
        return MediaLimits(
            self.video_fps,
            self.image_min_pixels,
            self.image_max_pixels,
            self.video_min_pixels,
            self.video_max_pixels,
            self.video_max_frames,
            self.video_backend,
        )


@dataclass
class GRMSFTConfig:
    sections: GRMSFTSections
    training: Any  # vlmrm.training.sft.SFTTrainingArguments
    source: str


def training_of(sections: GRMSFTSections) -> tuple[type, dict]:
    """``SFTTrainingArguments`` (HF's plus the run keys) and its defaults here (the collator needs
    the raw examples)."""
    if not sections.model.name_or_path:
        raise ConfigError("model.name_or_path: required")
    if not sections.data or any(entry.path is None for entry in sections.data):
        raise ConfigError("data: a list of {path: sft.json, weight: 1.0}, each with a path")
    return SFTTrainingArguments, {"output_dir": OUTPUT_HINT, "remove_unused_columns": False}


LAYOUT = Layout((GRMSFTSections,), training=training_of)


def load_grm_sft_config(
    path: str | Path | None = None, overrides: list[str] | None = None, values: dict | None = None
) -> GRMSFTConfig:
    """Sections (unknown keys are errors naming the dotted key) and the training arguments."""
    sections, args = load_config(LAYOUT, path, overrides, values)
    return GRMSFTConfig(sections, args, str(path) if path is not None else "values")


def save_run(folder: str | Path, sections: GRMSFTSections, counts: list[int]) -> None:
    """``grm_run.json``: base model, the data mix (files, weights, examples per epoch) and media limits."""
    record = {
        "base_model": sections.model.name_or_path,
        "lora": sections.lora.enabled,
        "data": [{**asdict(entry), "examples_per_epoch": n} for entry, n in zip(sections.data, counts)],
        "max_length": sections.max_length,
        "media": asdict(sections.media_limits),
    }
    (Path(folder) / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")


def run_grm_sft(config: GRMSFTConfig, callbacks=()) -> dict:
    """Train (run management of :mod:`vlmrm.training.run`), save the model and processor
    (+ ``grm_run.json``); returns the training metrics (with the run's skip counts).

    ``callbacks``: extra ``TrainerCallback``s, run before vlmrm's own (as the reward model's
    ``run_training`` takes them)."""
    sections, args = config.sections, config.training
    check_model_source(sections.model.name_or_path, "model.name_or_path")  # before the run dir is made
    checkpoint = prepare_run(args)
    sources = load_sft_files([entry.path for entry in sections.data])  # data errors before a model loads
    weights = [entry.weight for entry in sections.data]
    counts = mix_counts([len(s) for s in sources], weights)
    for entry, examples, count in zip(sections.data, sources, counts):
        logger.info(
            "grm_sft: %s: %d examples, weight %g -> %d per epoch",
            entry.path,
            len(examples),
            entry.weight,
            count,
        )
    processor = AutoProcessor.from_pretrained(sections.model.name_or_path)
    limits = sections.media_limits
    train = GRMSFTDataset(sources, weights, limits, image_factor(processor), args.seed)
    model = load_base(sections.model)
    if sections.lora.enabled:
        model = with_lora(model, sections.lora, [])
        model.print_trainable_parameters()
    trainer = GenerationSFTTrainer(
        model=model,
        args=args,
        data_collator=GRMSFTCollator(processor, sections.max_length, limits.image_size),
        train_dataset=train,
        processing_class=processor,
        callbacks=[*callbacks, EpochSetter(train), *early_stopping(args)],
    )
    result = start_training(trainer, checkpoint)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        processor.save_pretrained(args.output_dir)
        save_run(args.output_dir, sections, counts)
    logger.info("grm_sft: saved to %s", args.output_dir)
    return with_run_metrics(trainer, result.metrics)
