"""The data check at the start of a reward-model run: both data files, before any model loads."""

from __future__ import annotations

import logging

from vlmrm.core.problems import ValidationReport, enforce_bad_sample_policy, errors
from vlmrm.core.tables import summary_table
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import resolve_backend
from vlmrm.pairs.validate import validate_image_pairs, validate_video_pairs

logger = logging.getLogger(__name__)

DATA_SUMMARY_FILE = "data_summary.json"
"""``{data file: validation summary}`` of a run, in its output dir."""


def validate_run_data(run_config, strict: bool = False) -> list[ValidationReport]:
    """Validate ``meta_data`` and ``meta_data_test`` of a run before any model is loaded: every problem
    is logged, each file's summary as a short table (the JSON: :data:`DATA_SUMMARY_FILE` in the output
    dir, written by the run), then the run stops (``on_bad_sample: error``, or a file-level problem) or the bad
    lines are left to be skipped and counted (``skip``; see ``summary["bad_lines"]``)."""
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
            )
            for path in paths
        ]
    for report in reports:
        for problem in report.problems:
            stops = problem.severity == "error" and data.on_bad_sample == "error"
            (logger.error if stops else logger.warning)("%s", problem)
        logger.info("%s", summary_table(f"data: {report.file}", report.summary))
    enforce_bad_sample_policy([p for r in reports for p in errors(r.problems, strict)], data.on_bad_sample)
    for report in reports:
        if report.summary.get("bad_lines"):
            logger.warning(
                "%s: skipping %d bad line(s) (on_bad_sample: skip)", report.file, report.summary["bad_lines"]
            )
    return reports
