"""Check a VTG JSONL: every bad line, then every video problem of the lines that parsed."""

from __future__ import annotations

from pathlib import Path

from vlmrm.core.problems import ValidationReport, count_by_kind, errors
from vlmrm.media.video import VideoBackend, resolve_backend
from vlmrm.vtg.annotations import parse_vtg_jsonl, vtg_media_problems


def _stats(values: list[float]) -> dict:
    return {"min": min(values), "mean": sum(values) / len(values), "max": max(values)} if values else {}


def validate_vtg(
    path: str | Path, video_dir: str | Path | None = None, backend: VideoBackend | None = None
) -> ValidationReport:
    """Every bad line of a VTG JSONL, then every video problem of the lines that parsed, by line."""
    table = parse_vtg_jsonl(path, video_dir)
    report = ValidationReport(str(path), list(table.problems))
    if table.samples:
        report.problems += vtg_media_problems(table, backend or resolve_backend())
        report.problems.sort(key=lambda p: p.line or 0)
    bad = {p.line for p in errors(report.problems) if p.line is not None}
    samples = table.samples
    report.summary = {
        "lines": table.total_lines,
        "samples": len(samples),
        "bad_lines": len(bad),
        "videos": len({s.video for s in samples}),
        "trimmed": sum(s.video_start is not None or s.video_end is not None for s in samples),
        "duration_s": _stats([s.duration for s in samples]),
        "segment_fraction": _stats([(s.timestamp[1] - s.timestamp[0]) / s.duration for s in samples]),
        "problems": count_by_kind(report.problems),
    }
    return report
