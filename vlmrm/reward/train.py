"""One reward-model training run from a parsed :class:`vlmrm.reward.config.RunConfig`.

Order matters for users: config and data are checked (every CSV problem, every video) before
the model is loaded, so a typo costs seconds, not a cluster allocation.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from torch.utils.data import Subset
from transformers import TrainerCallback
from transformers.trainer_utils import IntervalStrategy

from vlmrm.core.config import ConfigError
from vlmrm.core.progress import Progress
from vlmrm.core.tables import summary_table
from vlmrm.media.frame_cache import frame_cache_from_config
from vlmrm.media.processor import image_factor
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import resolve_backend
from vlmrm.modeling.families import family_for
from vlmrm.modeling.loading import build_reward_model, merge_adapter
from vlmrm.modeling.reward_model import attach_spec, reward_token
from vlmrm.modeling.trainable import configure_trainable, parameter_summary
from vlmrm.pairs.image_pairs import ImagePairDataset, load_image_pairs
from vlmrm.pairs.split import split_held_out
from vlmrm.pairs.video_pairs import VideoPairDataset, load_video_pairs
from vlmrm.reward.collator import PairCollator
from vlmrm.reward.config import RunConfig, check_run_paths
from vlmrm.reward.templates import build_prompt
from vlmrm.reward.trainer import RewardTrainer
from vlmrm.reward.validate import DATA_SUMMARY_FILE, validate_run_data
from vlmrm.training.callbacks import EpochSetter
from vlmrm.training.distributed import init_deepspeed_comm
from vlmrm.training.run import early_stopping, prepare_run, start_training, with_run_metrics

logger = logging.getLogger(__name__)

FINAL_METRICS_FILE = "eval_results.json"
FULL_MODEL_DIR = "full_model"
LOOP_SKIPS_METRIC = "skipped_pairs_in_loop"
"""Final metric: pairs that passed validation but failed to load in the loop (``on_bad_sample: skip``)."""


def check_run_config(cfg: RunConfig) -> None:
    """Checks that need the whole run (beyond the dataclass checks), before anything loads: a missing
    path or an unreachable Hub id is one line in seconds, not a traceback after the model loaded."""
    if not cfg.model.model_name_or_path:
        raise ConfigError("model_name_or_path: required")
    if not cfg.data.meta_data:
        raise ConfigError("meta_data: required (the training CSV)")
    check_run_paths(cfg)
    if cfg.data.margin_score_columns and (cfg.training.loss_type != "margin" or cfg.data.is_image_data()):
        raise ConfigError(
            "margin_score_columns: per-pair margins are for loss_type: margin on CSV video pairs; got "
            f"loss_type {cfg.training.loss_type!r}" + (" on image data" if cfg.data.is_image_data() else "")
        )
    if cfg.training.loss_type == "reg":
        raise ConfigError("loss_type 'reg' needs numeric scores; CSV video pairs carry A/B/same labels only")
    if cfg.model.reward_token == "special":
        text = build_prompt(
            "x", cfg.data.eval_dim, cfg.data.prompt_template_type, cfg.data.prompt_template_text()
        )
        if not all(text.count(reward_token(d)) == 1 for d in cfg.data.eval_dim):
            template = cfg.data.prompt_template_file or repr(cfg.data.prompt_template_type)
            raise ConfigError(
                f"reward_token 'special': template {template} does not write each reward token once; "
                "use prompt_template_type: detailed_special or simple_special, or write "
                "{reward_token:DIM} once per dimension in the template file"
            )


def steps_per_epoch(num_pairs: int, args) -> int:
    """Optimizer steps per epoch as HF Trainer counts them: ceil(N / (batch x world)) // accumulation."""
    batches = math.ceil(num_pairs / (args.per_device_train_batch_size * max(1, args.world_size)))
    return max(1, batches // args.gradient_accumulation_steps)


def apply_epoch_intervals(args, num_pairs: int) -> None:
    """``logging_epochs`` / ``eval_epochs`` / ``save_epochs`` (fractions of an epoch) -> step intervals."""
    per_epoch = steps_per_epoch(num_pairs, args)
    for fraction_name, steps_name, strategy_name in (
        ("logging_epochs", "logging_steps", "logging_strategy"),
        ("eval_epochs", "eval_steps", "eval_strategy"),
        ("save_epochs", "save_steps", "save_strategy"),
    ):
        fraction = getattr(args, fraction_name)
        if fraction is not None:
            setattr(args, steps_name, max(1, round(fraction * per_epoch)))
            setattr(args, strategy_name, IntervalStrategy.STEPS)
    logger.info(
        "steps per epoch: %d (logging every %s, eval every %s, save every %s steps)",
        per_epoch,
        args.logging_steps,
        args.eval_steps,
        args.save_steps,
    )


def build_datasets(cfg: RunConfig, processor, reports=()):
    """Training and held-out datasets. ``reports``: the run's validation reports (image data reuses
    their problems instead of opening every image a second time)."""
    data = cfg.data
    validated = {report.file: report.problems for report in reports}
    if data.is_image_data():
        return build_image_datasets(cfg, validated)
    sampling = FrameSampling.from_data_config(data)
    backend = resolve_backend(data.video_backend)
    factor = image_factor(processor)
    cache = frame_cache_from_config(data)

    def table(csv_path):
        return load_video_pairs(
            csv_path,
            data.eval_dim,
            data.data_dir,
            data.use_tied_data,
            data.on_bad_sample,
            validated.get(str(csv_path)),
            data.restrict_paths,
            data.margin_score_columns,
        )

    def dataset(pairs_table):
        return VideoPairDataset(
            pairs_table,
            sampling,
            backend,
            factor,
            cfg.training.seed,
            data.cache_videos_in_memory,
            cache,
            data.on_bad_sample,
        )

    train, held_out = training_and_held_out(cfg, table(data.meta_data), table)
    return dataset(train), dataset(held_out) if held_out is not None else None


def training_and_held_out(cfg: RunConfig, train, read_table):
    """The training table (cut to ``max_train_samples``) and the held-out one: ``meta_data_test``
    read by ``read_table``, a seeded ``eval_split_ratio`` split of the training pairs, or None."""
    data = cfg.data
    held_out = read_table(data.meta_data_test) if data.meta_data_test else None
    if data.eval_split_ratio is not None:
        kept, held = split_held_out(train.pairs, data.eval_split_ratio, cfg.training.seed)
        train, held_out = replace(train, pairs=kept), replace(train, pairs=held)
        logger.info(
            "eval_split_ratio %g (seed %d): %d training pairs, %d held out",
            data.eval_split_ratio,
            cfg.training.seed,
            len(kept),
            len(held),
        )
    train.pairs = train.pairs[: data.max_train_samples]
    return train, held_out


def build_image_datasets(cfg: RunConfig, validated: dict[str, list]):
    """JSONL image pairs; bad lines were reported by validation, here only skipped (``on_bad_sample``)."""
    data = cfg.data

    def table(path):
        pairs_table, _ = load_image_pairs(
            path,
            data.image_dir,
            data.data_format,
            data.on_bad_sample,
            None,
            validated.get(str(path)),
            data.restrict_paths,
        )
        return pairs_table

    train, held_out = training_and_held_out(cfg, table(data.meta_data), table)
    train_irrelevant = data.num_irrelevant_pairs if data.use_irrelevant_queries else 0
    return (
        ImagePairDataset(train, train_irrelevant, cfg.training.seed, data.on_bad_sample),
        ImagePairDataset(held_out, data.num_irrelevant_pairs, cfg.training.seed, data.on_bad_sample)
        if held_out is not None
        else None,
    )


class SaveRewardConfigCallback(TrainerCallback):
    """Adapter checkpoints hold no config.json; write the backbone config + reward spec beside them."""

    def __init__(self, config):
        self.config = config

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir() and not (folder / "config.json").is_file():
                self.config.save_pretrained(folder)


def make_trainer(
    model,
    args,
    collator: PairCollator,
    frozen_llm: bool = False,
    train_dataset=None,
    eval_dataset=None,
    callbacks=(),
) -> RewardTrainer:
    """A ``RewardTrainer`` around a pair collator; training and evaluation build it the same way."""
    return RewardTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=collator.processor,
        callbacks=list(callbacks),
        eval_dim=collator.eval_dim,
        family=family_for(model.config),
        frozen_llm=frozen_llm,
    )


def build_trainer(cfg: RunConfig, model, processor, train_dataset=None, eval_dataset=None, callbacks=()):
    """The ``RewardTrainer`` of a run: training, or evaluating a loaded checkpoint with the same metrics."""
    collator = PairCollator.from_config(processor, cfg)
    frozen_llm = cfg.model.freeze_llm or cfg.model.lora_enable
    return make_trainer(model, cfg.training, collator, frozen_llm, train_dataset, eval_dataset, callbacks)


class PredictionProgress(TrainerCallback):
    """Progress of one ``trainer.predict`` (counts, rate, ETA; :mod:`vlmrm.core.progress`), on the
    main process only. Counted in pairs: each prediction step is one batch of
    ``per_device_eval_batch_size`` pairs per process (the last one may be short; the count is capped)."""

    def __init__(self, trainer, pairs: int, desc: str):
        self.pairs = pairs
        self.step_pairs = trainer.args.per_device_eval_batch_size * trainer.args.world_size
        self.bar = Progress(pairs, desc, "pairs") if trainer.is_world_process_zero() else None

    def on_prediction_step(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(min(self.step_pairs, self.pairs - self.bar.done))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def reward_normalization(trainer, dataset, eval_dim: list[str], max_pairs: int | None) -> dict:
    """Mean and std of each dimension's reward over both videos of the first ``max_pairs`` pairs.

    Stored in the checkpoint (``RewardSpec.normalization``) so inference can return rewards on a
    common scale and Overall = sum of normalised rewards weighs every dimension alike.
    """
    if max_pairs is not None and max_pairs < len(dataset):
        dataset = Subset(dataset, range(max_pairs))
    progress = PredictionProgress(trainer, len(dataset), "normalisation pass (training pairs)")
    trainer.add_callback(progress)
    try:
        rewards = np.asarray(trainer.predict(dataset, metric_key_prefix="normalization").predictions)
    finally:
        trainer.remove_callback(progress)
        progress.close()
    rewards = rewards.reshape(-1, len(eval_dim))  # (N, 2, D) -> (2N, D)
    return {
        dim: {"mean": float(rewards[:, d].mean()), "std": float(rewards[:, d].std()), "count": len(rewards)}
        for d, dim in enumerate(eval_dim)
    }


def write_data_summary(output_dir: Path, reports) -> Path:
    """The validation summaries as JSON (:data:`DATA_SUMMARY_FILE`): the log shows them as tables."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / DATA_SUMMARY_FILE
    path.write_text(json.dumps({report.file: report.summary for report in reports}, indent=2) + "\n")
    return path


def ddp_unused_parameters(args) -> None:
    """``ddp_find_unused_parameters`` False unless set: every trainable parameter of a reward model
    reaches the loss (LoRA layers, the head with its tie parameters, a trainable vision tower or
    merger, the embedding rows; ``lm_head`` is frozen by
    :func:`~vlmrm.modeling.trainable.group_trainability`), so DDP's search for unused ones would only
    cost a graph walk per step and warn that it found none. HF's own default turns the search on for
    a PEFT model."""
    if args.ddp_find_unused_parameters is None:
        args.ddp_find_unused_parameters = False


def skipped_counts(reports) -> dict[str, int]:
    """``skipped_pairs_<file name>`` for every data file whose bad lines were skipped (``on_bad_sample: skip``)."""
    counts = {}
    for report in reports:
        skipped = report.summary.get("bad_lines", 0)
        if skipped:
            counts[f"skipped_pairs_{Path(report.file).name}"] = skipped
            logger.warning("%s: %d pair(s) skipped (bad lines listed at validation)", report.file, skipped)
    return counts


def run_training(cfg: RunConfig, callbacks=()) -> dict:
    """Validate, build, train, save, evaluate. Returns the final evaluation metrics.

    ``callbacks``: extra ``TrainerCallback``s, run before vlmrm's own (early stopping comes last, so
    it sees what they did to the metrics)."""
    check_run_config(cfg)
    reports = validate_run_data(cfg)
    train_report = reports[0]
    args = cfg.training
    init_deepspeed_comm(args)
    ddp_unused_parameters(args)
    checkpoint = prepare_run(args)  # seeds before the model is built
    if args.process_index == 0:
        write_data_summary(Path(args.output_dir), reports)
    model, processor = build_reward_model(cfg.model, cfg.data, args)
    if args.disable_dropout:
        from trl.trainer.utils import disable_dropout_in_model

        disable_dropout_in_model(model)
    family = family_for(model.config)
    spec = model.reward_spec
    spec.training_videos = {
        k: train_report.summary[k] for k in ("fps", "frames_sampled") if k in train_report.summary
    }
    backbone_config = model.config
    attach_spec(backbone_config, spec)
    model = configure_trainable(
        model, cfg.model, family, spec.reward_token_ids if cfg.model.use_special_tokens else []
    )
    if args.gradient_checkpointing:
        args.gradient_checkpointing_kwargs = args.gradient_checkpointing_kwargs or {"use_reentrant": False}
    logger.info("parameters:\n%s", parameter_summary(model, family))

    train_dataset, eval_dataset = build_datasets(cfg, processor, reports)
    split_counts = (
        {"eval_split_train_pairs": len(train_dataset), "eval_split_held_out_pairs": len(eval_dataset)}
        if cfg.data.eval_split_ratio is not None
        else {}
    )
    apply_epoch_intervals(args, len(train_dataset))
    if eval_dataset is None:
        args.eval_strategy = IntervalStrategy.NO
    trainer = build_trainer(
        cfg,
        model,
        processor,
        train_dataset,
        eval_dataset,
        callbacks=[
            *callbacks,
            EpochSetter(train_dataset),
            SaveRewardConfigCallback(backbone_config),
            *early_stopping(args),
        ],
    )
    start_training(trainer, checkpoint)
    if args.normalization_pairs != 0:
        spec.normalization = reward_normalization(
            trainer, train_dataset, cfg.data.eval_dim, args.normalization_pairs
        )
        attach_spec(backbone_config, spec)
        logger.info("%s", summary_table("reward normalisation (training pairs)", spec.normalization))
    trainer.save_model(args.output_dir)
    metrics = trainer.evaluate() if eval_dataset is not None else {}
    loop_skips = trainer.loop_skips()
    if loop_skips:
        logger.warning(
            "%d pair(s) failed inside the training loop and were skipped (on_bad_sample: skip): %s",
            len(loop_skips),
            ", ".join(loop_skips),
        )
    if trainer.is_world_process_zero():
        backbone_config.save_pretrained(args.output_dir)  # adapters have none; full models: same + spec
        if args.save_full_model and cfg.model.lora_enable:
            merge_adapter(trainer.accelerator.unwrap_model(trainer.model)).save_pretrained(
                Path(args.output_dir) / FULL_MODEL_DIR
            )
            processor.save_pretrained(Path(args.output_dir) / FULL_MODEL_DIR)
        metrics = with_run_metrics(trainer, {**metrics, **split_counts, **skipped_counts(reports)})
        if loop_skips:
            metrics[LOOP_SKIPS_METRIC] = len(loop_skips)
        (Path(args.output_dir) / FINAL_METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
