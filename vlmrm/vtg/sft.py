"""``task: vtg_sft`` — supervised fine-tuning of a Qwen-VL model to answer a clip + sentence with
the segment, loss on the answer tokens only (HF ``Trainer``, LoRA by default).

Per sample the input is ``prompt ids (chat template, frames as images) + answer ids + <|im_end|>``;
labels are -100 over the prompt and the padding, so the loss is the answer's negative log-likelihood.
The prompt and the answer are tokenised apart and concatenated, so no tokeniser merge across the
boundary can shift the mask. A sample longer than ``max_length`` is an error naming its line:
truncation would cut image tokens or the answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoProcessor
from transformers.trainer_utils import IntervalStrategy

from vlmrm.core.config import ConfigError
from vlmrm.core.problems import DataValidationError, errors
from vlmrm.media.processor import image_factor
from vlmrm.media.video import resolve_backend
from vlmrm.modeling.generation import with_lora
from vlmrm.training.callbacks import EpochSetter
from vlmrm.training.run import early_stopping, prepare_run, start_training, with_run_metrics
from vlmrm.training.sft import END_OF_TURN, GenerationSFTTrainer, masked_row, pad_rows
from vlmrm.vtg.annotations import VTGDataset, load_vtg_jsonl
from vlmrm.vtg.config import check_model_paths
from vlmrm.vtg.duration_sampler import BatchSizeLogCallback, DurationBasedBatchSampler
from vlmrm.vtg.policy import load_policy, save_run
from vlmrm.vtg.prompting import frame_images, grounding_answer, grounding_prompt
from vlmrm.vtg.time_encoding import build_encoding
from vlmrm.vtg.validate import validate_vtg

logger = logging.getLogger(__name__)


@dataclass
class VTGSFTCollator:
    processor: object
    encoding: object
    max_length: int | None = None

    def encode(self, item: dict) -> dict:
        prompt = grounding_prompt(item["clip"], item["sentence"], item["duration"], self.encoding)
        text = self.processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        encoded = self.processor(text=[text], images=frame_images(item["clip"]), return_tensors="pt")
        answer = grounding_answer(item, self.encoding) + END_OF_TURN
        answer_ids = self.processor.tokenizer(answer, add_special_tokens=False, return_tensors="pt")[
            "input_ids"
        ]
        prompt_ids = encoded["input_ids"]
        length = prompt_ids.shape[1] + answer_ids.shape[1]
        if self.max_length is not None and length > self.max_length:
            raise ValueError(
                f"line {item['line']} (qid {item['qid']}): prompt + answer = {length} tokens > max_length "
                f"{self.max_length}; lower video.max_frames / resolution or raise max_length"
            )
        row = masked_row([(prompt_ids, False), (answer_ids, True)], encoded["mm_token_type_ids"])
        return {**row, "pixel_values": encoded["pixel_values"], "image_grid_thw": encoded["image_grid_thw"]}

    def __call__(self, items: list[dict]) -> dict:
        """The batch of :mod:`vlmrm.training.sft`; ``sample_ids`` are the samples' JSONL line numbers."""
        rows = [self.encode(item) for item in items]
        return pad_rows(rows, self.processor.tokenizer.pad_token_id, [item["line"] for item in items])


def checked_samples(path: str, video_dir: str | None, backend) -> list:
    """Every sample of a VTG JSONL once the file and its videos pass validation (the same check as
    ``python -m vlmrm.data.validate --task vtg``); any error stops the run before a model loads."""
    report = validate_vtg(path, video_dir, backend)
    for problem in report.problems:
        logger.warning("%s", problem)
    found = errors(report.problems)
    if found:
        raise DataValidationError(found)
    return load_vtg_jsonl(path, video_dir)


def vtg_datasets(data, factor: int, seed: int):
    """(train, held-out or None) datasets of the data config, validated."""
    if not data.dataset.annotation_file:
        raise ConfigError("data_config: dataset.annotation_file is required for training")
    backend = resolve_backend("auto")
    files = (data.dataset.annotation_file, data.validation.annotation_file)
    train, held_out = (
        VTGDataset(checked_samples(path, data.dataset.video_dir, backend), data.video, backend, factor, seed)
        if path
        else None
        for path in files
    )
    return train, held_out


def run_vtg_sft(config, callbacks=()) -> dict:
    """Train (run management of :mod:`vlmrm.training.run`), save the model, processor and
    ``vtg_run.json``; returns the held-out evaluation metrics (with the run's skip counts).

    ``callbacks``: extra ``TrainerCallback``s, run before vlmrm's own (as the reward model's
    ``run_training`` takes them)."""
    sections, data, args = config.sections, config.data, config.training
    check_model_paths(sections)
    checkpoint = prepare_run(args)
    processor = AutoProcessor.from_pretrained(sections.model.name_or_path)
    train, held_out = vtg_datasets(data, image_factor(processor), args.seed)
    if held_out is None:
        args.eval_strategy = IntervalStrategy.NO
    model, token_ids = load_policy(sections.model, data.temporal, processor)
    if sections.lora.enabled:
        model = with_lora(model, sections.lora, token_ids)
        model.print_trainable_parameters()
    encoding = build_encoding(data.temporal)
    batching = data.duration_batching
    sampler, batch_log, callbacks = None, None, [*callbacks, EpochSetter(train)]
    if batching.enabled:
        sampler = DurationBasedBatchSampler(
            train.durations,
            batching.target_batch_duration,
            batching.max_batch_size,
            batching.min_batch_size,
            batching.drop_last,
            seed=args.seed,
            num_replicas=args.world_size,
            rank=args.process_index,
        )
        batch_log = BatchSizeLogCallback()
        callbacks += [EpochSetter(sampler), batch_log]
    callbacks += early_stopping(args)
    trainer = GenerationSFTTrainer(
        model=model,
        args=args,
        data_collator=VTGSFTCollator(processor, encoding, sections.max_length),
        train_dataset=train,
        eval_dataset=held_out,
        processing_class=processor,
        callbacks=callbacks,
        batch_sampler=sampler,
        batch_log=batch_log,
    )
    start_training(trainer, checkpoint)
    trainer.save_model(args.output_dir)
    metrics = with_run_metrics(trainer, trainer.evaluate() if held_out is not None else {})
    if trainer.is_world_process_zero():
        processor.save_pretrained(args.output_dir)
        save_run(args.output_dir, sections.model, data.temporal, data.video)
    logger.info("vtg_sft: saved to %s", Path(args.output_dir))
    return metrics
