"""``eval_rm.py`` with ``task: grm``: verdict accuracy and parse rate of a generative reward model.

    task: grm
    model_dir: outputs/grm_sft            # a grm_sft output (or any Qwen-VL checkpoint)
    data_path: hpdv3:test.json            # source:path[,source:path] (vlmrm.grm.sources)
    output_dir: evaluation_results/grm

This is the rejection-sampling generation path (:class:`vlmrm.grm.rejection_sampling.SamplingJob`
with the HF engine) over held-out pairs: same instruction, same seeded shown order, same parsing.
Its files in ``output_dir``: ``verdicts.processed.jsonl`` (every generation and verdict),
``verdicts.jsonl`` (the correctly judged ones), ``verdicts.stats.json`` (the sampler's counts) and
``grm_eval.json`` = the counts plus model and data. Accuracy counts an unparseable answer as wrong;
parse rate = parsed / judged (tie pairs are skipped and counted apart).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vlmrm.core.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, ConfigError, Layout, load_config, option
from vlmrm.core.paths import check_model_source
from vlmrm.grm.engines import GenerationSettings, HFEngine
from vlmrm.grm.instructions import INSTRUCTION_FILE_PREFIX, load_instruction
from vlmrm.grm.parsing import judge
from vlmrm.grm.rejection_sampling import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    MediaSettings,
    SamplingJob,
)
from vlmrm.grm.sources import LIST_SEPARATOR, SOURCE_SEPARATOR, load_sources
from vlmrm.media.sampling import DEFAULT_VIDEO_FPS

RECORDS_FILE = "verdicts.jsonl"
RESULTS_FILE = "grm_eval.json"


def data_path_form(value: str, resolve: Callable[[str], str]) -> str:
    """The path rule on each path of ``source:path[,source:path]``."""
    entries = []
    for entry in value.split(LIST_SEPARATOR):
        source, sep, path = entry.strip().partition(SOURCE_SEPARATOR)
        entries.append(f"{source}{sep}{resolve(path)}" if sep and path else entry)
    return LIST_SEPARATOR.join(entries)


def instruction_form(value: str, resolve: Callable[[str], str]) -> str:
    """The path rule on the file of an ``@FILE`` instruction; a template given inline is no path."""
    if value.startswith(INSTRUCTION_FILE_PREFIX):
        return INSTRUCTION_FILE_PREFIX + resolve(value[len(INSTRUCTION_FILE_PREFIX) :])
    return value


@dataclass
class GRMEvalConfig:
    task: Literal["grm"] = option("grm", "This evaluation.")
    model_dir: str | None = option(None, "Checkpoint folder (grm_sft output) or hub id.", path=True)
    data_path: str | None = option(None, "source:path[,source:path] of held-out pairs.", path=data_path_form)
    output_dir: str = option("evaluation_results/grm", "Where the verdicts and counts go.")
    batch_size: int = option(DEFAULT_BATCH_SIZE, "Pairs per generate call.", bound=AT_LEAST_ONE)
    max_new_tokens: int = option(
        DEFAULT_MAX_NEW_TOKENS, "Most tokens generated per pair.", bound=AT_LEAST_ONE
    )
    use_cot: bool = option(True, "Default instruction asks for <think> + scores (as in training data).")
    task_instruction: str | None = option(
        None, "Template with {prompt}, or @FILE (default: T2I/T2V one).", path=instruction_form
    )
    video_fps: float = option(DEFAULT_VIDEO_FPS, "Frames sampled per second of video.", bound=POSITIVE)
    video_backend: str = option("auto", "torchcodec | decord | pyav | auto.")
    temperature: float = option(0.0, "0 = greedy.", bound=NON_NEGATIVE)
    seed: int = option(0, "Shown order per pair and sampling seed.", bound=NON_NEGATIVE)
    max_samples: int | None = option(None, "Judge the first N pairs only.", bound=AT_LEAST_ONE)
    resume: bool = option(
        False, "Keep verdicts already in output_dir (same model and data!); else start over."
    )

    def __post_init__(self) -> None:
        if not self.model_dir or not self.data_path:
            raise ConfigError("model_dir and data_path are required")
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.video_fps <= 0:
            raise ConfigError("batch_size and max_new_tokens must be >= 1 and video_fps > 0")


def parse_grm_eval_config(
    source: str | Path | dict | None = None, overrides=None, values=None
) -> GRMEvalConfig:
    """The ``task: grm`` eval YAML (or its mapping) with command-line overrides."""
    (config,) = load_config(Layout((GRMEvalConfig,)), source, overrides, values)
    return config


def run_grm_evaluation(config: GRMEvalConfig) -> dict:
    """Judge every pair, write the files of the module docstring; returns ``grm_eval.json``'s content."""
    check_model_source(config.model_dir, "model_dir")
    out = Path(config.output_dir)
    instruction = None if config.task_instruction is None else load_instruction(config.task_instruction)
    job = SamplingJob(out / RECORDS_FILE, config.use_cot, instruction, config.batch_size, config.seed)
    if not config.resume:
        for path in (job.output_path, job.processed_path, job.stats_path):
            path.unlink(missing_ok=True)
    samples = load_sources(config.data_path).samples[: config.max_samples]
    engine = HFEngine(
        config.model_dir, GenerationSettings(config.max_new_tokens, config.temperature, seed=config.seed)
    )
    job.media = MediaSettings(config.video_fps, engine.image_factor, config.video_backend)
    stats = job.run(samples, engine, judge)
    results = {"model_dir": config.model_dir, "data_path": config.data_path, **stats}
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    return results
