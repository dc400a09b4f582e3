"""The data check at the start of a reward-model run: both data files, before any model loads."""

from __future__ import annotations

import logging

from vlmrm.core.config import ConfigError
from vlmrm.core.problems import (
    DataValidationError,
    Problem,
    ValidationReport,
    enforce_bad_sample_policy,
    errors,
)
from vlmrm.core.tables import summary_table
from vlmrm.media.processor import image_factor
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import placeholder_video, resolve_backend
from vlmrm.pairs.image_pairs import parse_image_pair_jsonl
from vlmrm.pairs.validate import validate_image_pairs, validate_video_pairs
from vlmrm.pairs.video_pairs import parse_video_pair_csv
from vlmrm.reward.collator import PairCollator

logger = logging.getLogger(__name__)

DATA_SUMMARY_FILE = "data_summary.json"
"""``{data file: validation summary}`` of a run, in its output dir."""


def no_pairs_problem(report: ValidationReport) -> Problem:
    """The file-level problem of a data file left with no pair to train or evaluate on."""
    if "pairs" in report.summary:
        why = f"{report.summary['pairs']} parsed, {report.summary.get('bad_lines', 0)} line(s) with errors"
    else:
        why = "the file itself is unusable, see below"
    return Problem(
        report.file,
        None,
        None,
        f"no usable pairs ({why}); the run stops before the model loads",
        kind="no_pairs",
    )


def _enforce(reports: list[ValidationReport], on_bad_sample: str, strict: bool) -> None:
    found = [p for r in reports for p in errors(r.problems, strict)]
    empty = [no_pairs_problem(report) for report in reports if not report.summary.get("usable_pairs")]
    line_errors_stop = on_bad_sample == "error" and any(p.line is not None for p in found)
    if empty and not line_errors_stop:
        raise DataValidationError(empty + found)
    enforce_bad_sample_policy(found, on_bad_sample)


def sequence_length_problems(run_config, processor, report: ValidationReport) -> list[Problem]:
    """Pairs of a validated file whose longer side exceeds ``max_length`` tokens, counted by the
    run's own collator (:meth:`PairCollator.sequence_lengths`, visual tokens included) on what
    training would feed it: the images themselves, or videos of the sampled frame count and resized
    size with black pixels (:func:`placeholder_video`: the tokens do not depend on the pixels). The
    pairs with an error already are left out."""
    data = run_config.data
    collator = PairCollator.from_config(processor, run_config)
    limit = run_config.training.max_length
    bad = {p.line for p in errors(report.problems)}
    if data.is_image_data():
        table = parse_image_pair_jsonl(report.file, data.image_dir, data.data_format, data.restrict_paths)
        encoded = (
            (
                pair.line,
                lambda pair=pair: collator.encode(
                    [pair.prompt] * 2,
                    images=[[r.open() for r in pair.side_a.images], [r.open() for r in pair.side_b.images]],
                    responses=[pair.side_a.response, pair.side_b.response],
                ),
            )
            for pair in table.pairs
            if pair.line not in bad
        )
    else:
        table = parse_video_pair_csv(
            report.file,
            data.eval_dim,
            data.data_dir,
            data.use_tied_data,
            data.restrict_paths,
            data.margin_score_columns,
        )
        sampling, backend = FrameSampling.from_data_config(data), resolve_backend(data.video_backend)
        factor = image_factor(processor)
        videos = {}

        def video(path):
            if path not in videos:
                videos[path] = placeholder_video(path, sampling, backend, factor)
            return videos[path]

        encoded = (
            (
                pair.line,
                lambda pair=pair: collator.encode(
                    [pair.prompt] * 2, videos=[video(pair.path_a), video(pair.path_b)]
                ),
            )
            for pair in table.pairs
            if pair.line not in bad
        )
    problems = []
    for line, encode in encoded:
        longest = int(collator.sequence_lengths(encode(), 1).max())
        if longest > limit:
            problems.append(
                Problem(
                    report.file,
                    line,
                    None,
                    f"{longest} tokens (visual tokens included) exceed max_length={limit}; lower fps / "
                    "max_frame_pixels / max_pixels or raise max_length",
                    kind="too_long",
                )
            )
    return problems


def validate_run_data(run_config, strict: bool = False) -> list[ValidationReport]:
    """Validate ``meta_data`` and ``meta_data_test`` of a run before any model is loaded: every problem
    is logged, each file's summary as a short table (the JSON: :data:`DATA_SUMMARY_FILE` in the
    output dir, written by the run), then the run stops (``on_bad_sample: error``, or a file-level
    problem) or the bad lines are left to be skipped and counted (``skip``; see
    ``summary["bad_lines"]``). A file left with no usable pair (empty, header only, every line
    skipped) stops the run here too, that message first (under ``error`` line errors already stop it and are listed as before). With
    ``max_length`` set, the run's processor (no model) then counts every usable pair's tokens
    (:func:`sequence_length_problems`), and an over-long pair is a problem of its line."""
    data = run_config.data
    paths = [path for path in (data.meta_data, data.meta_data_test) if path]
    if data.is_image_data():
        reports = [
            validate_image_pairs(path, data.image_dir, data.data_format, data.restrict_paths)
            for path in paths
        ]
    else:
        sampling, backend = FrameSampling.from_data_config(data), resolve_backend(data.video_backend)
        reports = [
            validate_video_pairs(
                path,
                data.eval_dim,
                data.data_dir,
                data.use_tied_data,
                sampling,
                backend,
                data.restrict_paths,
                data.margin_score_columns,
                data.validate_decode,
            )
            for path in paths
        ]
    check_margin_columns(reports, run_config.training.loss_type)
    for report in reports:
        for problem in report.problems:
            stops = problem.severity == "error" and data.on_bad_sample == "error"
            (logger.error if stops else logger.warning)("%s", problem)
        logger.info("%s", summary_table(f"data: {report.file}", report.summary))
    _enforce(reports, data.on_bad_sample, strict)
    if run_config.training.max_length is not None:
        from vlmrm.modeling.loading import build_processor

        processor = build_processor(run_config.model, data)[0]
        for report in reports:
            too_long = sequence_length_problems(run_config, processor, report)
            for problem in too_long:
                (logger.error if data.on_bad_sample == "error" else logger.warning)("%s", problem)
            report.problems += too_long
            bad = {p.line for p in errors(report.problems)}
            report.summary["usable_pairs"] -= len({p.line for p in too_long})
            report.summary["bad_lines"] = len(bad)
        _enforce(reports, data.on_bad_sample, strict)
    for report in reports:
        if report.summary.get("bad_lines"):
            logger.warning(
                "%s: skipping %d bad line(s) (on_bad_sample: skip)", report.file, report.summary["bad_lines"]
            )
    return reports


def check_margin_columns(reports: list[ValidationReport], loss_type: str) -> None:
    """A data file with per-pair margins (TRL's ``margin`` column) trains with ``loss_type: margin``
    only: any other loss would drop the column silently."""
    for report in reports:
        count = report.summary.get("margins", 0)
        if count and loss_type != "margin":
            raise ConfigError(
                f"{report.file}: {count} pair(s) carry a margin (TRL's margin column), which only "
                f"loss_type: margin uses (-log sigmoid(r_chosen - r_rejected - margin)); got loss_type {loss_type!r}"
            )
