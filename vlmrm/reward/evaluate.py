"""Evaluate reward checkpoints on preference data: what ``eval_rm.py`` / ``run_eval.sh`` run.

For every model directory in the config, every ``checkpoint_pattern`` match (in step order) and the
final model in the directory itself are loaded with :func:`vlmrm.modeling.loading.load_reward_model` and scored
on ``dataset_path`` with the same collator, reward forward and
:func:`vlmrm.reward.metrics.preference_metrics` as the in-training evaluation, so the numbers agree
(both pair orders from one forward, batches collated once per run: :mod:`vlmrm.reward.eval_passes`).
Frame sampling, template and layout come from each checkpoint's ``config.json``.

Outputs under ``output_dir``: ``evaluation_results.csv`` (one row per model x checkpoint x
dimension, Overall included when the data has an ``Overall`` column), ``evaluation_results.json``
(the same plus per-pair rewards), ``logs/eval_TIMESTAMP.log``, ``report.html`` + PNGs
(:mod:`vlmrm.report`) and TensorBoard scalars under ``tensorboard/``.

Paths are checked before anything loads (:func:`check_eval_config`). A model dir without checkpoints
or a checkpoint that fails to load stops the run with :class:`EvaluationFailed` (``eval_rm.py`` exits
non-zero); with ``keep_going: true`` it becomes a result row with its error, the rest is evaluated and
written, and the run still ends with :class:`EvaluationFailed` listing every failure, so a script
never mistakes a half-failed evaluation for a good one. Data rows whose videos are missing or
unreadable are skipped, named (file:line) and counted in the results.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from transformers import AutoConfig

from vlmrm.core.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, ConfigError, Layout, load_config, option
from vlmrm.core.paths import check_directory, check_file, check_model_source
from vlmrm.core.problems import EvaluationFailed, Problem, errors
from vlmrm.media.frame_cache import FrameCache
from vlmrm.media.processor import image_factor
from vlmrm.media.video import resolve_backend
from vlmrm.modeling.loading import ADAPTER_CONFIG, load_reward_model
from vlmrm.modeling.reward_model import RewardSpec, spec_of
from vlmrm.pairs.image_pairs import ImagePairDataset, load_image_pairs
from vlmrm.pairs.labels import IMAGE_PAIR_SUFFIXES, OVERALL
from vlmrm.pairs.validate import validate_video_pairs
from vlmrm.pairs.video_pairs import VideoPairDataset, load_video_pairs
from vlmrm.reward.collator import PairCollator
from vlmrm.reward.eval_passes import CollatedBatches, PairScores, ScoredCheckpoints, score_pairs
from vlmrm.reward.metrics import kendall_tau_b, preference_metrics, spearman_rho, swap_consistency

logger = logging.getLogger(__name__)

FRAME_CACHE_FOLDER = "frame_cache"
"""Inside the run's temporary folder: frames decoded for one checkpoint serve the next."""
CHECKPOINT_STEP = re.compile(r"-(\d+)$")
SCORE_COLUMN = "score_{dim}_{side}"
"""Optional absolute-score columns of the CSV (e.g. ``score_VQ_A``): Kendall tau / Spearman rho of the
model's rewards against them, over both videos of every pair."""
CSV_FIELDS = (
    "model_dir",
    "checkpoint",
    "step",
    "dimension",
    "accuracy",
    "accuracy_with_ties",
    "tie_eps",
    "margin_mean",
    "margin_std",
    "count",
    "count_A",
    "count_B",
    "count_tie",
    "swap_consistency",
    "kendall_tau",
    "spearman_rho",
    "skipped_pairs",
    "identical_to",
    "error",
)


@dataclass
class EvalConfig:
    """Keys of ``eval_config.yaml`` (the key names of earlier reward-framework eval configs, which run unchanged, plus what the checkpoint cannot know)."""

    task: Literal["reward_model"] = option(
        "reward_model", "The job (vlmrm.cli.tasks); task: vtg and task: grm have their own keys."
    )
    model_dirs: list[str] | None = option(None, "Training output directories to evaluate.", path=True)
    dataset_path: str | None = option(None, "Evaluation data: a CSV of video pairs.", path=True)
    data_dir: str | None = option(
        None, "Folder relative video paths resolve against (default: the CSV's).", path=True
    )
    data_format: Literal["auto", "video_pairs", "image_pairs"] = option(
        "auto", "auto: by file type (.csv = video pairs, .jsonl = image pairs)."
    )
    base_model_path: str | None = option(
        None, "Backbone for adapter checkpoints (default: the one recorded in the checkpoint).", path=True
    )
    checkpoint_pattern: str = option("checkpoint-*", "Glob of checkpoints inside each model dir.")
    eval_batch_size: int = option(8, "Pairs per forward batch.", bound=AT_LEAST_ONE)
    max_eval_samples: int | None = option(
        None, "Evaluate only the first N pairs (None = all).", bound=AT_LEAST_ONE
    )
    output_dir: str = option("evaluation_results", "Where results, logs and the report go.")
    output_file: str = option("evaluation_results.csv", "Name of the results CSV (JSON beside it).")
    swap_check: bool = option(True, "Score every pair again with A and B exchanged.")
    report: bool = option(True, "Write report.html with plots (needs matplotlib).")
    video_backend: str | None = option(None, "Decoder (default: the checkpoint's training choice).")
    dataloader_num_workers: int | None = option(
        None,
        "DataLoader workers decoding and collating while the model scores the previous batch "
        "(default: min(2, CPU cores) while videos must be decoded, none once every video is in the frame "
        "cache; 0 = in the main process).",
        bound=NON_NEGATIVE,
    )
    frame_cache_dir: str | None = option(
        None,
        "Frame cache to read and fill (vlmrm.media.frame_cache): the training run's frame_cache_dir "
        "lets the first checkpoint read the frames decoded during training instead of decoding them "
        "(entries match only for the same file, sampling, decoder and resize); default: a temporary "
        "folder, removed after the run, shared by the run's checkpoints.",
    )
    frame_cache_max_gb: float = option(
        50.0,
        "Size limit of frame_cache_dir in GiB; least-recently-used entries are deleted beyond it.",
        bound=POSITIVE,
    )
    batch_cache_mb: int = option(
        2048,
        "Collated batches (MB of tensors) kept in memory for the next checkpoint with the same processor, "
        "template, sampling and data, which then skips decoding and collation; 0 = off.",
        bound=NON_NEGATIVE,
    )
    keep_going: bool = option(
        False,
        "Evaluate the other checkpoints past a missing model dir or a checkpoint that fails to load "
        "(an error row each); the run still exits non-zero with a summary of the failures.",
    )

    def __post_init__(self) -> None:
        if not self.model_dirs:
            raise ConfigError("model_dirs: give at least one training output directory")
        if not self.dataset_path:
            raise ConfigError("dataset_path: required")
        if self.data_format == "auto" and Path(self.dataset_path).suffix.lower() not in (
            ".csv",
            ".jsonl",
            ".json",
        ):
            raise ConfigError(f"dataset_path {self.dataset_path}: unknown data format; set data_format")


def parse_eval_config(path: str | Path | dict | None = None, overrides=None, values=None) -> EvalConfig:
    """``eval_config.yaml`` (flat, like the training YAML) with command-line overrides."""
    (config,) = load_config(Layout((EvalConfig,), flat=True), path, overrides, values)
    return config


def check_eval_config(config: EvalConfig) -> None:
    """Paths before anything loads: the data, the backbone and (unless ``keep_going``) every model dir.
    Without this a missing ``dataset_path`` was a traceback after the first model had loaded."""
    check_file(config.dataset_path, "dataset_path")
    check_directory(config.data_dir, "data_dir")
    check_model_source(config.base_model_path, "base_model_path")
    if not config.keep_going:
        for model_dir in config.model_dirs:
            check_directory(model_dir, "model_dirs")


def failure_lines(rows: list[dict]) -> list[str]:
    """One line per model dir or checkpoint that could not be evaluated (its error row)."""
    return [
        f"{row['model_dir']} {row['checkpoint']}".rstrip() + f": {row['error']}"
        for row in rows
        if row.get("error")
    ]


def find_checkpoints(model_dir: Path, pattern: str) -> list[Path]:
    """Checkpoints matching ``pattern`` in step order, then the final model in ``model_dir`` itself."""
    found = [p for p in model_dir.glob(pattern) if p.is_dir()]

    def step(path: Path) -> int:
        match = CHECKPOINT_STEP.search(path.name)
        return int(match.group(1)) if match else -1

    found.sort(key=lambda p: (step(p), p.name))
    if (model_dir / "config.json").is_file():
        found.append(model_dir)
    return found


def checkpoint_step(checkpoint: Path) -> int | None:
    """Global step of a checkpoint (from its name, or trainer_state.json of the final model)."""
    match = CHECKPOINT_STEP.search(checkpoint.name)
    if match:
        return int(match.group(1))
    state = checkpoint / "trainer_state.json"
    if state.is_file():
        return json.loads(state.read_text()).get("global_step")
    steps = [
        int(m.group(1)) for p in checkpoint.glob("checkpoint-*") if (m := CHECKPOINT_STEP.search(p.name))
    ]
    return max(steps) if steps else None


@dataclass
class EvalData:
    """The evaluation pairs a checkpoint's sampling decodes, with what was skipped."""

    dataset: VideoPairDataset | ImagePairDataset
    overall_labels: np.ndarray | None
    scores: dict[str, np.ndarray]  # dim -> (N, 2) absolute scores, when the CSV has them
    skipped: list[Problem] = field(default_factory=list)


def is_image_data(config: EvalConfig) -> bool:
    return config.data_format == "image_pairs" or (
        config.data_format == "auto" and Path(config.dataset_path).suffix.lower() in IMAGE_PAIR_SUFFIXES
    )


def load_eval_images(config: EvalConfig) -> EvalData:
    """JSONL image pairs: bad lines (JSON, fields, images) are skipped and named, never fatal."""
    table, skipped = load_image_pairs(
        config.dataset_path, config.data_dir, "auto", "skip", config.max_eval_samples
    )
    return EvalData(ImagePairDataset(table), None, {}, skipped)


def pair_labels(pair) -> tuple:
    """Labels of a video pair (one per dimension, NaN where missing) or an image pair (one preference)."""
    if hasattr(pair, "labels"):
        return tuple(float("nan") if y is None else y for y in pair.labels)
    return (pair.label,)


def pair_record(pair) -> dict:
    """What identifies a pair in the per-pair results: its line and items (paths, responses)."""
    if hasattr(pair, "path_a"):
        return {
            "line": pair.line,
            "path_A": str(pair.path_a),
            "path_B": str(pair.path_b),
            "prompt": pair.prompt,
        }
    return {
        "line": pair.line,
        "id": pair.sample_id,
        "prompt": pair.prompt,
        "images_A": [str(r) for r in pair.side_a.images],
        "images_B": [str(r) for r in pair.side_b.images],
        "response_A": pair.side_a.response,
        "response_B": pair.side_b.response,
    }


@dataclass
class SharedInputs:
    """What every checkpoint of a run reuses: the validation report per (dimensions, sampling,
    backend), a frame cache, so each video is probed and decoded once per run, not per checkpoint,
    and the last checkpoint's collated batches (:class:`vlmrm.reward.eval_passes.CollatedBatches`)."""

    frame_cache: FrameCache | None = None
    reports: dict = field(default_factory=dict)
    collated: CollatedBatches | None = None

    def validate(self, config: EvalConfig, dims: list[str], sampling, backend):
        key = (tuple(dims), sampling, backend.name)
        if key not in self.reports:
            self.reports[key] = validate_video_pairs(
                config.dataset_path, dims, config.data_dir, True, sampling, backend
            )
        return self.reports[key]


def load_eval_data(
    config: EvalConfig, spec: RewardSpec, processor, shared: SharedInputs | None = None
) -> EvalData:
    """Parse + validate the data with the checkpoint's sampling; skip pairs with unusable media."""
    if is_image_data(config):
        return load_eval_images(config)
    shared = shared or SharedInputs()
    sampling = spec.frame_sampling()
    backend = resolve_backend(config.video_backend or spec.video_backend)
    columns = _csv_columns(config.dataset_path)
    with_overall = OVERALL in columns and OVERALL not in spec.eval_dim
    dims = spec.eval_dim + ([OVERALL] if with_overall else [])
    report = shared.validate(config, dims, sampling, backend)
    table = load_video_pairs(config.dataset_path, dims, config.data_dir, True, "skip", report.problems)
    skipped = errors(report.problems)
    if config.max_eval_samples is not None:
        table.pairs = table.pairs[: config.max_eval_samples]
    overall = None
    if with_overall:
        overall = np.array([pair_labels(pair)[-1] for pair in table.pairs], dtype=np.float64)
        table.pairs = [_drop_last_label(pair) for pair in table.pairs]
        table.eval_dim = list(spec.eval_dim)
    frame_cache = shared.frame_cache if sampling.sample_type == "uniform" else None
    dataset = VideoPairDataset(table, sampling, backend, image_factor(processor), frame_cache=frame_cache)
    return EvalData(dataset, overall, _absolute_scores(config.dataset_path, table, spec.eval_dim), skipped)


def _csv_columns(path: str) -> list[str]:
    with open(path, newline="") as handle:
        return next(csv.reader(handle), [])


def _drop_last_label(pair):
    return replace(pair, labels=pair.labels[:-1])


def _absolute_scores(path: str, table, eval_dim: list[str]) -> dict[str, np.ndarray]:
    """(N, 2) scores per dimension whose ``score_<dim>_A`` / ``_B`` columns exist, for kept pairs."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    scores = {}
    for dim in eval_dim:
        names = [SCORE_COLUMN.format(dim=dim, side=side) for side in ("A", "B")]
        if rows and all(name in rows[0] for name in names):
            try:
                scores[dim] = np.array([[float(rows[p.row][n]) for n in names] for p in table.pairs])
            except ValueError:
                logger.warning("%s: non-numeric %s columns; no rank correlations", path, names)
    return scores


class BaseModelCache:
    """One loaded backbone per base path, shared by all adapter checkpoints (PEFT ``unload`` returns
    it unchanged after each adapter's evaluation)."""

    def __init__(self):
        self.models: dict[str, torch.nn.Module] = {}

    def load(self, checkpoint: Path, base_model_path: str | None):
        if not (checkpoint / ADAPTER_CONFIG).is_file():
            return load_reward_model(checkpoint)
        spec = spec_of_dir(checkpoint)
        base_path = base_model_path or spec.base_model_name_or_path
        model, processor = load_reward_model(
            checkpoint, base_model=self.models.get(base_path), base_path=base_path
        )
        self.models[base_path] = model.get_base_model()
        return model, processor

    @staticmethod
    def release(model) -> None:
        if hasattr(model, "unload"):
            model.unload()


def spec_of_dir(checkpoint: Path) -> RewardSpec:
    spec = spec_of(AutoConfig.from_pretrained(checkpoint))
    if spec is None:
        raise ValueError(f"{checkpoint}: not a vlmrm reward checkpoint")
    return spec


def evaluate_checkpoint(
    model, processor, config: EvalConfig, shared: SharedInputs | None = None, name: str = ""
) -> tuple[dict, EvalData, PairScores]:
    """Metrics and per-pair rewards of one loaded checkpoint, with its data and scores (for reuse)."""
    spec = model.reward_spec
    data = load_eval_data(config, spec, processor, shared)
    collator = PairCollator.from_spec(processor, spec)
    scores = score_pairs(
        model,
        collator,
        data.dataset,
        config.eval_batch_size,
        config.swap_check,
        config.dataloader_num_workers,
        name,
        shared.collated if shared else None,
    )
    return checkpoint_result(spec, data, scores, config), data, scores


def checkpoint_result(spec: RewardSpec, data: EvalData, scores: PairScores, config: EvalConfig) -> dict:
    """Metrics (:func:`preference_metrics`, swap consistency, rank correlations) and per-pair rewards."""
    rewards = scores.rewards if len(data.dataset) else np.zeros((0, 2, spec.num_dims))  # (N, 2, D)
    labels = (
        np.array([pair_labels(p) for p in data.dataset.table.pairs])
        if len(data.dataset)
        else np.zeros((0, spec.num_dims))
    )
    metrics = preference_metrics(
        rewards[:, 0], rewards[:, 1], labels, spec.eval_dim, data.overall_labels, spec.normalization
    )
    margins = rewards[:, 0] - rewards[:, 1]
    if config.swap_check and len(data.dataset):
        swapped = scores.swapped
        for d, dim in enumerate(spec.eval_dim):
            metrics[f"swap_consistency_{dim}"] = swap_consistency(
                margins[:, d], swapped[:, 0, d] - swapped[:, 1, d]
            )
    for dim, absolute in data.scores.items():
        d = spec.eval_dim.index(dim)
        metrics[f"kendall_tau_{dim}"] = kendall_tau_b(rewards[:, :, d].ravel(), absolute.ravel())
        metrics[f"spearman_rho_{dim}"] = spearman_rho(rewards[:, :, d].ravel(), absolute.ravel())
    pairs = [
        {
            **pair_record(pair),
            "labels": dict(zip(spec.eval_dim, getattr(pair, "labels", (getattr(pair, "label", None),)))),
            "rewards_A": dict(zip(spec.eval_dim, rewards[i, 0].tolist())),
            "rewards_B": dict(zip(spec.eval_dim, rewards[i, 1].tolist())),
        }
        for i, pair in enumerate(data.dataset.table.pairs)
    ]
    return {
        "metrics": metrics,
        "dimensions": spec.eval_dim + ([OVERALL] if data.overall_labels is not None else []),
        "skipped": [str(p) for p in data.skipped],
        "pairs": pairs,
        "tie_k": spec.tie_k,
    }


def result_rows(model_dir: str, checkpoint: Path, result: dict) -> list[dict]:
    """One CSV row per dimension (or one error row)."""
    base = {"model_dir": model_dir, "checkpoint": checkpoint.name, "step": checkpoint_step(checkpoint)}
    if "error" in result:
        return [{**base, "dimension": "", "error": result["error"]}]
    metrics = result["metrics"]
    rows = []
    for dim in result["dimensions"]:
        row = {
            **base,
            "dimension": dim,
            "skipped_pairs": len(result["skipped"]),
            "identical_to": result.get("identical_to", ""),
            "error": "",
        }
        for name in CSV_FIELDS[CSV_FIELDS.index("accuracy") : CSV_FIELDS.index("skipped_pairs")]:
            row[name] = metrics.get(f"{name}_{dim}", "")
        rows.append(row)
    return rows


def run_evaluation(config: EvalConfig) -> list[dict]:
    """Evaluate every checkpoint of every model dir; write CSV, JSON, log, report. Returns the CSV rows
    (with ``keep_going``, error rows included: :func:`failure_lines`); without ``keep_going`` the first
    failure raises :class:`EvaluationFailed`."""
    check_eval_config(config)
    out = Path(config.output_dir)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    log_file = out / "logs" / f"eval_{time.strftime('%Y%m%d_%H%M%S')}.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        return _evaluate_all(config, out)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


class CheckpointLoadError(Exception):
    """A checkpoint whose spec or weights cannot be loaded: an error row of its own (``keep_going``)
    or the run's failure. Errors while scoring a loaded checkpoint are not this: they propagate."""


def _evaluate_one(
    checkpoint: Path,
    config: EvalConfig,
    cache: BaseModelCache,
    shared: SharedInputs,
    scored: ScoredCheckpoints,
) -> dict:
    """Load and score one checkpoint, or, when its weights and scoring spec equal those of a
    checkpoint already scored, reuse those scores (its own spec's normalisation applied) and record
    ``identical_to``. A load error is :class:`CheckpointLoadError` (the caller makes it a result row)."""
    try:
        spec = spec_of_dir(checkpoint)
    except Exception as err:  # any unreadable spec: the checkpoint's own failure
        raise CheckpointLoadError(f"{type(err).__name__}: {err}") from err
    same = scored.find(checkpoint, spec)
    if same is not None:
        logger.info("%s: weights identical to %s; its scores are reused", checkpoint, same.checkpoint)
        result = checkpoint_result(spec, same.data, same.scores, config)
        return {**result, "identical_to": same.checkpoint.name}
    try:
        model, processor = cache.load(checkpoint, config.base_model_path)
    except Exception as err:  # any broken weights, adapter or processor files
        raise CheckpointLoadError(f"{type(err).__name__}: {err}") from err
    try:
        result, data, scores = evaluate_checkpoint(model, processor, config, shared, checkpoint.name)
    finally:
        cache.release(model)
    scored.add(checkpoint, spec, data, scores)
    return result


def _evaluate_all(config: EvalConfig, out: Path) -> list[dict]:
    logger.info("evaluation config: %s", json.dumps(asdict(config)))
    cache = BaseModelCache()
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="vlmrm-eval-") as work:
        shared = SharedInputs(
            FrameCache(config.frame_cache_dir or Path(work) / FRAME_CACHE_FOLDER, config.frame_cache_max_gb),
            collated=CollatedBatches.of_megabytes(config.batch_cache_mb),
        )
        scored = ScoredCheckpoints()
        for model_dir in config.model_dirs:
            checkpoints = find_checkpoints(Path(model_dir), config.checkpoint_pattern)
            if not checkpoints:
                problem = (
                    "no checkpoints found"
                    if Path(model_dir).is_dir()
                    else "directory not found (key model_dirs)"
                )
                logger.error(
                    "%s: %s (pattern %r, or a final model)", model_dir, problem, config.checkpoint_pattern
                )
                if not config.keep_going:
                    raise EvaluationFailed([f"{model_dir}: {problem}"])
                results.append({"model_dir": model_dir, "checkpoint": "", "error": problem})
                rows.append({"model_dir": model_dir, "checkpoint": "", "dimension": "", "error": problem})
                continue
            for checkpoint in checkpoints:
                logger.info("evaluating %s", checkpoint)
                try:
                    result = _evaluate_one(checkpoint, config, cache, shared, scored)
                except CheckpointLoadError as err:  # an error row (keep_going) or the failure
                    logger.error("%s: cannot load: %s", checkpoint, err)
                    result = {"error": f"cannot load: {err}"}
                    if not config.keep_going:
                        raise EvaluationFailed([f"{checkpoint}: {result['error']}"]) from err
                else:
                    for problem in result["skipped"]:
                        logger.warning("skipped pair: %s", problem)
                    logger.info("%s: %s", checkpoint, json.dumps(result["metrics"]))
                rows += result_rows(model_dir, checkpoint, result)
                results.append(
                    {
                        "model_dir": model_dir,
                        "checkpoint": str(checkpoint),
                        "step": checkpoint_step(checkpoint),
                        **result,
                    }
                )
    _write_outputs(config, out, rows, results)
    return rows


def write_sample_rewards(results: list[dict], path: Path) -> None:
    """One JSON line per model x checkpoint x pair: its items, labels and rewards (the per-sample
    results file of image-ranking scorers), for error analysis without re-running the model."""
    with path.open("w") as handle:
        for result in results:
            for pair in result.get("pairs", []):
                record = {"model_dir": result["model_dir"], "checkpoint": result["checkpoint"], **pair}
                handle.write(json.dumps(record, default=float) + "\n")


def _write_outputs(config: EvalConfig, out: Path, rows: list[dict], results: list[dict]) -> None:
    csv_path = out / config.output_file
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    csv_path.with_suffix(".json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    write_sample_rewards(results, csv_path.with_name(f"{csv_path.stem}_samples.jsonl"))
    logger.info("wrote %s and %s", csv_path, csv_path.with_suffix(".json"))
    if config.report:
        from vlmrm.reward.report import write_report

        write_report(results, out, asdict(config))
