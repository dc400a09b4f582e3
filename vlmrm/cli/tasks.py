"""One launcher, several jobs: the ``task:`` key of a config picks what ``train_rm.py`` and
``eval_rm.py`` run (default ``reward_model``), so ``./run_distributed.sh --config X.yaml`` and
``./run_eval.sh X.yaml`` start any of them with the same torchrun / DeepSpeed plumbing. Every job
reads its YAML and the ``--key value`` overrides after it through
:func:`vlmrm.core.config.load_config`: one grammar, one path rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vlmrm.core.config import ConfigError, read_yaml
from vlmrm.core.problems import EvaluationFailed

DEFAULT_TRAIN_TASK = "reward_model"
DEFAULT_EVAL_TASK = "reward_model"


def _reward_model(path: str, overrides: list[str]) -> dict:
    from vlmrm.reward.config import check_run_paths, parse_config

    config = parse_config(path, overrides)
    if config.model.model_name_or_path and config.data.meta_data:  # else run_training says it's required
        check_run_paths(config)  # before the training stack's imports: a typo costs seconds
    from vlmrm.reward.train import run_training

    return run_training(config)


def _vtg_sft(path: str, overrides: list[str]) -> dict:
    from vlmrm.vtg.config import load_vtg_task_config
    from vlmrm.vtg.sft import run_vtg_sft

    return run_vtg_sft(load_vtg_task_config(path, overrides))


def _vtg_grpo(path: str, overrides: list[str]) -> dict:
    from vlmrm.vtg.config import load_vtg_task_config
    from vlmrm.vtg.grpo import run_vtg_grpo

    return run_vtg_grpo(load_vtg_task_config(path, overrides))


def _grm_sft(path: str, overrides: list[str]) -> dict:
    from vlmrm.grm.sft import load_grm_sft_config, run_grm_sft

    return run_grm_sft(load_grm_sft_config(path, overrides))


TRAIN_TASKS: dict[str, Callable[[str, list[str]], dict]] = {
    "reward_model": _reward_model,
    "vtg_sft": _vtg_sft,
    "vtg_grpo": _vtg_grpo,
    "grm_sft": _grm_sft,
}


def _reward_model_config(path: str, overrides: list[str]) -> object:
    from vlmrm.reward.config import parse_config

    return parse_config(path, overrides)


def _vtg_config(path: str, overrides: list[str]) -> object:
    from vlmrm.vtg.config import load_vtg_task_config

    return load_vtg_task_config(path, overrides)


def _grm_sft_config(path: str, overrides: list[str]) -> object:
    from vlmrm.grm.sft import load_grm_sft_config

    return load_grm_sft_config(path, overrides)


TRAIN_CONFIGS: dict[str, Callable[[str, list[str]], object]] = {
    "reward_model": _reward_model_config,
    "vtg_sft": _vtg_config,
    "vtg_grpo": _vtg_config,
    "grm_sft": _grm_sft_config,
}
"""The config loader of each training job: what the launcher checks once before starting ranks."""


def _reward_model_eval(path: str, overrides: list[str]) -> list[str]:
    """Evaluate reward checkpoints; one line per checkpoint and dimension, then the results file.
    Any model dir or checkpoint that could not be evaluated (``keep_going``: after all the others)
    raises :class:`EvaluationFailed` carrying those lines, so ``eval_rm.py`` exits non-zero."""
    from vlmrm.reward.evaluate import failure_lines, parse_eval_config, run_evaluation

    config = parse_eval_config(path, overrides)
    lines = []
    rows = run_evaluation(config)
    for row in rows:
        where = f"{row['model_dir']} {row['checkpoint']}"
        if row.get("error"):
            lines.append(f"{where}: {row['error']}")
        else:
            lines.append(f"{where} {row['dimension']}: accuracy {row['accuracy']:.4f}")
    lines.append(f"results: {config.output_dir}/{config.output_file}")
    failures = failure_lines(rows)
    if failures:
        raise EvaluationFailed(failures, lines)
    return lines


def _vtg_eval(path: str, overrides: list[str]) -> list[str]:
    """R@0.3/0.5/0.7 and mIoU of a VTG model (or of the file's ``pred``), and where they were written."""
    from vlmrm.vtg.evaluate import parse_vtg_eval_config, run_vtg_evaluation

    config = parse_vtg_eval_config(path, overrides)
    metrics = run_vtg_evaluation(config)
    shown = ", ".join(f"{key} {metrics[key]:.4f}" for key in ("R@0.3", "R@0.5", "R@0.7", "mIoU"))
    return [
        f"{config.annotation_file}: {shown} over {metrics['count']} samples",
        f"results: {config.output_dir}",
    ]


def _grm_eval(path: str, overrides: list[str]) -> list[str]:
    """Verdict accuracy and parse rate of a generative reward model, and where they were written."""
    from vlmrm.grm.evaluate import RESULTS_FILE, parse_grm_eval_config, run_grm_evaluation

    config = parse_grm_eval_config(path, overrides)
    stats = run_grm_evaluation(config)
    shown = ", ".join(
        f"{key} {'n/a' if stats[key] is None else format(stats[key], '.4f')}"
        for key in ("accuracy", "parse_rate")
    )
    return [
        f"{config.data_path}: {shown} over {stats['total']} pairs ({stats['ties_skipped']} ties skipped)",
        f"results: {config.output_dir}/{RESULTS_FILE}",
    ]


EVAL_TASKS = {"reward_model": _reward_model_eval, "vtg": _vtg_eval, "grm": _grm_eval}


def task_of(path: str | Path, default: str) -> str:
    return str(read_yaml(path).get("task", default))


def pick(table: dict, path: str | Path, default: str) -> Callable:
    task = task_of(path, default)
    if task not in table:
        raise ConfigError(f"{path}: task {task!r} is not one of {', '.join(table)}")
    return table[task]


def run_train_task(path: str, overrides: list[str]) -> dict:
    """The metrics of the training job the config's ``task:`` names."""
    return pick(TRAIN_TASKS, path, DEFAULT_TRAIN_TASK)(path, overrides)


def check_train_config(path: str, overrides: list[str]) -> object:
    """Load (and so check) the config of the training job ``task:`` names, without running it."""
    return pick(TRAIN_CONFIGS, path, DEFAULT_TRAIN_TASK)(path, overrides)


def run_eval_task(path: str, overrides: list[str]) -> list[str]:
    """Run the evaluation the config's ``task:`` names; returns the summary lines to print."""
    return pick(EVAL_TASKS, path, DEFAULT_EVAL_TASK)(path, overrides)
