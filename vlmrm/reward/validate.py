"""The data check at the start of a reward-model run: both data files, before any model loads."""

from __future__ import annotations

import json
import logging

from vlmrm.core.problems import (
    DataValidationError,
    Problem,
    ValidationReport,
    enforce_bad_sample_policy,
    errors,
)
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import resolve_backend
from vlmrm.pairs.validate import validate_image_pairs, validate_video_pairs

logger = logging.getLogger(__name__)


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


def validate_run_data(run_config, strict: bool = False) -> list[ValidationReport]:
    """Validate ``meta_data`` and ``meta_data_test`` of a run before any model is loaded: every problem
    is logged, then the run stops (``on_bad_sample: error``, or a file-level problem) or the bad
    lines are left to be skipped and counted (``skip``; see ``summary["bad_lines"]``). A file left
    with no usable pair (empty, header only, every line skipped) stops the run here too, that
    message first (under ``error`` line errors already stop it and are listed as before)."""
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
    for report in reports:
        for problem in report.problems:
            stops = problem.severity == "error" and data.on_bad_sample == "error"
            (logger.error if stops else logger.warning)("%s", problem)
        logger.info("%s: %s", report.file, json.dumps(report.summary))
    found = [p for r in reports for p in errors(r.problems, strict)]
    empty = [no_pairs_problem(report) for report in reports if not report.summary.get("usable_pairs")]
    line_errors_stop = data.on_bad_sample == "error" and any(p.line is not None for p in found)
    if empty and not line_errors_stop:
        raise DataValidationError(empty + found)
    enforce_bad_sample_policy(found, data.on_bad_sample)
    for report in reports:
        if report.summary.get("bad_lines"):
            logger.warning(
                "%s: skipping %d bad line(s) (on_bad_sample: skip)", report.file, report.summary["bad_lines"]
            )
    return reports
