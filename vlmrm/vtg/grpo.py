"""``task: vtg_grpo`` — TRL ``GRPOTrainer`` on the grounding prompt, rewarded by how well the sampled
answer's segment matches the labelled one.

Rewards (the ``rewards:`` list; weights go to GRPOConfig ``reward_weights``): ``temporal_iou`` =
IoU(pred, gt); ``segment_overlap`` with ``mode`` recall |pred ∩ gt| / |gt|, precision |pred ∩ gt| / |pred|
or f1 (their harmonic mean). An answer the encoding cannot parse scores 0.

From an SFT run (``rl.sft_checkpoint``): its adapter is merged into the base (the temporal-token rows
with it), and GRPO trains a fresh LoRA on top, so the KL term (``kl_coef`` = β; TRL takes the
reference as the same model with the adapter disabled) is measured against the SFT policy, not the
untuned base. The result is saved merged (full weights + processor + ``vtg_run.json``), loadable by
evaluation like an SFT output.
"""

from __future__ import annotations

import logging

from transformers import AutoProcessor

from vlmrm.media.processor import image_factor
from vlmrm.training.callbacks import EpochSetter
from vlmrm.training.run import early_stopping, prepare_run, start_training, with_run_metrics
from vlmrm.vtg.config import check_model_paths
from vlmrm.vtg.metrics import segment_overlap, temporal_iou
from vlmrm.vtg.policy import load_policy, load_trained, read_run, save_run
from vlmrm.vtg.prompting import frame_images, grounding_prompt
from vlmrm.vtg.sft import vtg_datasets
from vlmrm.vtg.time_encoding import build_encoding

logger = logging.getLogger(__name__)


def completion_text(completion) -> str:
    """TRL gives conversational completions as [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"]
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return content


def reward_function(entry, encoding):
    """The TRL reward function of one ``rewards:`` entry (named for TRL's per-reward logs)."""
    mode = entry.mode or "recall"

    def reward(prompts, completions, timestamp, duration, **kwargs) -> list[float]:
        scores = []
        for completion, truth, length in zip(completions, timestamp, duration):
            pred = encoding.parse(completion_text(completion), length)
            if entry.name == "temporal_iou":
                scores.append(temporal_iou(pred, tuple(truth)))
            else:
                scores.append(segment_overlap(pred, tuple(truth), mode))
        return scores

    reward.__name__ = entry.name if entry.name == "temporal_iou" else f"segment_overlap_{mode}"
    return reward


PROMPT_COLUMNS = ("prompt", "images", "timestamp", "duration", "sample_ids")


def grounding_prompt_rows(dataset, encoding):
    """A VTG dataset as the ``datasets.Dataset`` TRL requires, decoded lazily: the table holds only
    indices, and a transform turns each fetched row into a conversational ``prompt`` with image
    placeholders, its ``images`` (the frames, filled into the placeholders in order), the reward
    functions' ``timestamp`` / ``duration`` and the sample's JSONL line as ``sample_ids`` (named by
    a non-finite-loss error)."""
    import datasets

    def decode(batch: dict) -> dict:
        rows = []
        for index in batch["index"]:
            item = dataset[index]
            rows.append(
                {
                    "prompt": grounding_prompt(item["clip"], item["sentence"], item["duration"], encoding),
                    "images": frame_images(item["clip"]),
                    "timestamp": list(item["timestamp"]),
                    "duration": item["duration"],
                    "sample_ids": item["line"],
                }
            )
        return {column: [row[column] for row in rows] for column in PROMPT_COLUMNS}

    return datasets.Dataset.from_dict({"index": list(range(len(dataset)))}).with_transform(decode)


def starting_policy(sections, data):
    """(model, processor, temporal section, video section): the merged SFT model, or the base."""
    checkpoint = sections.rl.sft_checkpoint
    if checkpoint is None:
        processor = AutoProcessor.from_pretrained(sections.model.name_or_path)
        model, _ = load_policy(sections.model, data.temporal, processor)
        return model, processor, data.temporal, data.video
    model, processor, run = load_trained(checkpoint)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if (run["temporal"], run["video"]) != (data.temporal, data.video):
        logger.warning("vtg_grpo: using the SFT run's temporal and video sections (%s)", checkpoint)
    return model, processor, run["temporal"], run["video"]


def run_vtg_grpo(config) -> dict:
    """GRPO (run management of :mod:`vlmrm.training.run`), saved merged; returns the training
    metrics (with the run's skip counts)."""
    from peft import LoraConfig

    from vlmrm.vtg.grpo_trainer import ManagedGRPOTrainer

    sections, data, args = config.sections, config.data, config.training
    check_model_paths(sections)
    checkpoint = prepare_run(args)
    if sections.rl.sft_checkpoint:
        read_run(sections.rl.sft_checkpoint)  # fail early on a folder that is not a VTG output
    model, processor, temporal, video = starting_policy(sections, data)
    data.temporal, data.video = temporal, video
    train, _ = vtg_datasets(data, image_factor(processor), args.seed)
    encoding = build_encoding(temporal)
    peft_config = None
    if sections.lora.enabled:
        lora = sections.lora
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.lora_alpha,
            lora_dropout=lora.lora_dropout,
            target_modules=list(lora.target_modules),
            task_type="CAUSAL_LM",
        )
    prompts = grounding_prompt_rows(train, encoding)
    trainer = ManagedGRPOTrainer(
        model=model,
        reward_funcs=[reward_function(entry, encoding) for entry in sections.rewards],
        args=args,
        train_dataset=prompts,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=[EpochSetter(train), *early_stopping(args)],
    )
    result = start_training(trainer, checkpoint)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        policy = trainer.accelerator.unwrap_model(trainer.model)
        if hasattr(policy, "merge_and_unload"):
            policy = policy.merge_and_unload()
        policy.save_pretrained(args.output_dir)
        processor.save_pretrained(args.output_dir)
        save_run(args.output_dir, sections.model, temporal, video)
    return with_run_metrics(trainer, result.metrics)
