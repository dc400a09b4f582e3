"""GRM rejection sampling: generate a verdict per pair, keep the pairs the model got right.

python -m vlmrm.grm.rejection_sampling --model_path CKPT --data_path hpdv3:data/train.json \\
    --output_path out/filtered.jsonl --use_cot [--engine hf|vllm] [--video_fps 2.0] [--seed 0]

Each pair is shown in a random order (a coin flip seeded by ``(seed, sample_id)``, so a re-run or
a resumed run shows every pair the same way) and the order is recorded: the generated text talks
about "Image 1" / "Image 2" *as shown*, and conversion to SFT data must label answers in that order.
Both orders occur, so the kept set does not teach a position bias.

Three files (``out/filtered.jsonl`` as the example):

``filtered.jsonl`` (``--output_path``)
    one record per **kept** sample (verdict parsed and equal to the ground truth), in the
    ``vlmrm.grm.records.FilteredSample`` layout that conversion reads.
``filtered.processed.jsonl``
    one line per **processed** sample, kept or not: ``sample_id``, ``status`` (one of
    :data:`STATUSES`), ``kept``, ``shown_order``, ``predicted``, ``generated_text``. A re-run skips
    every id in it, so an interrupted run resumes where it stopped.
``filtered.stats.json``
    counts over the processed file (so they cover every run of a resumed job): total, parsed,
    unparseable, correct, ties skipped, media errors, accuracy over non-tie samples.

Pairs whose ground truth is a tie are not generated for: they are written as ``tie_skipped`` and
counted on their own. A pair whose media cannot be read is a ``media_error`` line, not a crash.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vlmrm.grm.engines import (
    ENGINES,
    VLLM_PACKAGE,
    Engine,
    GenerationSettings,
    Request,
    build_engine,
    vllm_missing_message,
)
from vlmrm.grm.instructions import default_instruction, fill_instruction, load_instruction
from vlmrm.grm.parsing import Verdict, filtered_record, shown_items
from vlmrm.grm.sources import GRMSample
from vlmrm.media.image import ImageLoadError, open_image
from vlmrm.media.sampling import DEFAULT_VIDEO_FPS, QWEN2_IMAGE_FACTOR, FrameSampling
from vlmrm.media.video import VideoDecodeError, load_video, resolve_backend

logger = logging.getLogger(__name__)

Choice = Literal[1, 2, "tie"]
TIE = "tie"
ShownOrder = tuple[int, int]
AS_LOADED: ShownOrder = (1, 2)
SWAPPED: ShownOrder = (2, 1)

STATUSES = ("correct", "wrong", "unparseable", "tie_skipped", "media_error")
"""Outcome of one processed sample; only ``correct`` is kept."""

DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_NEW_TOKENS = 2048
"""The defaults of the usual GRM rejection-sampling scripts (``INFERENCE_BATCH_SIZE``, ``MAX_NEW_TOKENS``):
8 prompts per generate call, room for a long ``<think>`` block before the answer."""
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
PROCESSED_SUFFIX = ".processed.jsonl"
STATS_SUFFIX = ".stats.json"


Judge = Callable[[GRMSample, ShownOrder, str], Verdict]


def shown_order(seed: int, sample_id: str) -> ShownOrder:
    """(1, 2) or (2, 1): a coin flip from sha256 of ``seed:sample_id``.

    A hash rather than one RNG stream, so the order of a pair does not depend on which other pairs
    were processed before it (resume, ``--max_samples``, different source order).
    """
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return SWAPPED if digest[0] & 1 else AS_LOADED


@dataclass
class MediaSettings:
    """How visuals are read: videos sampled at ``video_fps`` and resized to multiples of ``image_factor``."""

    video_fps: float = DEFAULT_VIDEO_FPS
    image_factor: int = QWEN2_IMAGE_FACTOR
    video_backend: str = "auto"


def load_visuals(paths: list[Path], media: str, settings: MediaSettings) -> list:
    """PIL images, or ``DecodedVideo`` frames sampled at ``settings.video_fps``."""
    if media == "image":
        return [open_image(p) for p in paths]
    sampling = FrameSampling(fps=settings.video_fps)
    backend = resolve_backend(settings.video_backend)
    return [load_video(p, sampling, backend, settings.image_factor) for p in paths]


def outcome(sample: GRMSample, verdict: Verdict) -> str:
    if verdict.predicted is None:
        return "unparseable"
    return "correct" if verdict.correct else "wrong"


def summarize(processed: list[dict]) -> dict:
    """Counts over processed lines; accuracy = correct / judged non-tie samples (unparseable = wrong)."""
    counts = {status: 0 for status in STATUSES}
    for line in processed:
        counts[line["status"]] += 1
    judged = counts["correct"] + counts["wrong"] + counts["unparseable"]
    return {
        "total": len(processed),
        "parsed": counts["correct"] + counts["wrong"],
        "unparseable": counts["unparseable"],
        "correct": counts["correct"],
        "wrong": counts["wrong"],
        "ties_skipped": counts["tie_skipped"],
        "media_errors": counts["media_error"],
        "kept": counts["correct"],
        "accuracy": counts["correct"] / judged if judged else None,
        "parse_rate": (judged - counts["unparseable"]) / judged if judged else None,
    }


def read_jsonl_resumable(path: Path) -> list[dict]:
    """Lines of a JSONL this sampler appends to; a torn last line (killed mid-write) is cut off."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines, keep = [], 0
    for chunk in raw.splitlines(keepends=True):
        try:
            lines.append(json.loads(chunk))
        except json.JSONDecodeError:
            if keep + len(chunk) < len(raw):
                raise ValueError(f"{path}: corrupt line {len(lines) + 1} (not the last one)") from None
            logger.warning("%s: dropping an incomplete last line (interrupted run)", path)
            with path.open("r+b") as handle:
                handle.truncate(keep)
            break
        keep += len(chunk)
    return lines


def processed_line(sample: GRMSample, order: ShownOrder, status: str, **fields: Any) -> dict:
    return {
        "sample_id": str(sample.sample_id),
        "source": sample.source,
        "status": status,
        "kept": status == "correct",
        "shown_order": list(order),
        **fields,
    }


@dataclass
class SamplingJob:
    """One rejection-sampling run over ``samples`` into ``output_path`` (+ processed and stats files)."""

    output_path: Path
    use_cot: bool = True
    instruction: str | None = None
    """Template for every sample; None: the T2I / T2V default for each sample's media."""
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = 0
    media: MediaSettings | None = None

    @property
    def processed_path(self) -> Path:
        return self.output_path.with_name(self.output_path.stem + PROCESSED_SUFFIX)

    @property
    def stats_path(self) -> Path:
        return self.output_path.with_name(self.output_path.stem + STATS_SUFFIX)

    def instruction_for(self, sample: GRMSample) -> str:
        template = self.instruction or default_instruction(sample.media, self.use_cot)
        return fill_instruction(template, sample.prompt)

    def run(self, samples: list[GRMSample], engine: Engine, judge: Judge) -> dict:
        """Process every sample not already in the processed file; returns (and writes) the stats."""
        media = self.media or MediaSettings()
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        processed = self._resume()
        done = {line["sample_id"] for line in processed}
        pending = [s for s in samples if str(s.sample_id) not in done]
        logger.info("%d samples, %d already processed, %d to go", len(samples), len(done), len(pending))
        ties = [s for s in pending if s.ground_truth == TIE]
        tie_lines = [processed_line(s, shown_order(self.seed, s.sample_id), "tie_skipped") for s in ties]
        self._append([], tie_lines)
        processed += tie_lines
        to_judge = [s for s in pending if s.ground_truth != TIE]
        for first in range(0, len(to_judge), self.batch_size):
            lines = self._process_batch(to_judge[first : first + self.batch_size], engine, judge, media)
            processed += lines
            stats = summarize(processed)
            logger.info(
                "processed %d/%d: kept %d, unparseable %d",
                first + len(lines),
                len(to_judge),
                stats["kept"],
                stats["unparseable"],
            )
        stats = summarize(processed)
        self.stats_path.write_text(json.dumps(stats, indent=2) + "\n")
        return stats

    def _process_batch(self, batch: list[GRMSample], engine: Engine, judge: Judge, media: MediaSettings):
        records, lines, requests, judged = [], [], [], []
        for sample in batch:
            order = shown_order(self.seed, sample.sample_id)
            try:
                visuals = load_visuals(list(shown_items(sample, order)), sample.media, media)
            except (ImageLoadError, VideoDecodeError) as err:
                logger.warning("sample %s: %s", sample.sample_id, err)
                lines.append(processed_line(sample, order, "media_error", error=str(err)))
                continue
            instruction = self.instruction_for(sample)
            requests.append(Request(str(sample.sample_id), instruction, sample.media, visuals))
            judged.append((sample, order, instruction))
        texts = engine.generate(requests) if requests else []
        for (sample, order, instruction), text in zip(judged, texts, strict=True):
            verdict = judge(sample, order, text)
            status = outcome(sample, verdict)
            if status == "correct":
                records.append(
                    filtered_record(sample, order, instruction, text, verdict, media.video_fps).to_json()
                )
            lines.append(
                processed_line(sample, order, status, predicted=verdict.predicted, generated_text=text)
            )
        self._append(records, lines)
        return lines

    def _append(self, records: list[dict], lines: list[dict]) -> None:
        """Kept records first, then the processed lines that mark them done (see :meth:`_resume`)."""
        for path, rows in ((self.output_path, records), (self.processed_path, lines)):
            with path.open("a", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    def _resume(self) -> list[dict]:
        """Processed lines so far. A kept record whose processed line was never written (killed
        between the two appends) gets that line now, so it is neither lost nor written twice."""
        processed = read_jsonl_resumable(self.processed_path)
        done = {line["sample_id"] for line in processed}
        missing = [r for r in read_jsonl_resumable(self.output_path) if r["sample_id"] not in done]
        lines = [
            {
                "sample_id": r["sample_id"],
                "source": r["source"],
                "status": "correct",
                "kept": True,
                "shown_order": r["shown_order"],
                "predicted": r["predicted"],
                "generated_text": r["generated_text"],
            }
            for r in missing
        ]
        self._append([], lines)
        return processed + lines


def load_samples(spec: str) -> list[GRMSample]:
    """Samples of ``source:path[,source:path]`` (``vlmrm.grm.sources.load_sources(spec).samples``).

    Imported on use: the sources module lands separately, and tests inject samples instead."""
    from vlmrm.grm.sources import load_sources

    loaded = load_sources(spec)
    logger.info("loaded %s: %s", spec, loaded.counts)
    return loaded.samples


def default_judge() -> Judge:
    """``vlmrm.grm.parsing.judge``: ``<answer>`` first, then the documented fallback."""
    from vlmrm.grm.parsing import judge

    return judge


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vlmrm.grm.rejection_sampling", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--model_path", required=True, help="GRM checkpoint (HF folder or hub id)")
    parser.add_argument("--data_path", required=True, help="source:path[,source:path], e.g. hpdv3:train.json")
    parser.add_argument("--output_path", required=True, help="JSONL of kept samples (+ .processed / .stats)")
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="pairs per generate call")
    parser.add_argument("--max_new_tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument(
        "--use_cot", action="store_true", help="default instruction asks for <think> + scores"
    )
    parser.add_argument("--task_instruction", help="template with {prompt}, or @FILE (default: T2I/T2V one)")
    parser.add_argument(
        "--video_fps", type=float, default=DEFAULT_VIDEO_FPS, help="frames sampled per second"
    )
    parser.add_argument("--video_backend", default="auto", help="torchcodec | decord | pyav | auto")
    parser.add_argument("--engine", choices=ENGINES, default="hf", help="hf: transformers generate; vllm")
    parser.add_argument("--tensor_parallel_size", type=int, help="vllm only: GPUs per model (default 1)")
    parser.add_argument(
        "--gpu_memory_utilization", type=float, help="vllm only: fraction of GPU memory (default 0.9)"
    )
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; > 0 samples")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling (temperature > 0)")
    parser.add_argument("--seed", type=int, default=0, help="shown order per sample and sampling seed")
    parser.add_argument("--max_samples", type=int, help="process the first N samples only (smoke runs)")
    return parser


def main(argv: list[str] | None = None, judge: Judge | None = None) -> dict:
    """Parse, check, build the engine, run; ``judge`` defaults to ``vlmrm.grm.parsing.judge``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.engine == "vllm" and importlib.util.find_spec(VLLM_PACKAGE) is None:
        parser.error(vllm_missing_message())
    if args.engine == "hf":
        for name in ("tensor_parallel_size", "gpu_memory_utilization"):
            if getattr(args, name) is not None:
                parser.error(f"--{name} applies to --engine vllm only")
    if args.batch_size < 1 or args.max_new_tokens < 1 or args.video_fps <= 0:
        parser.error("--batch_size and --max_new_tokens must be >= 1 and --video_fps > 0")
    try:
        instruction = None if args.task_instruction is None else load_instruction(args.task_instruction)
    except (OSError, ValueError) as err:
        parser.error(str(err))
    samples = load_samples(args.data_path)[: args.max_samples]
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_p, args.seed)
    engine = build_engine(
        args.engine,
        args.model_path,
        settings,
        args.tensor_parallel_size or 1,
        args.gpu_memory_utilization or DEFAULT_GPU_MEMORY_UTILIZATION,
    )
    job = SamplingJob(
        Path(args.output_path),
        args.use_cot,
        instruction,
        args.batch_size,
        args.seed,
        MediaSettings(args.video_fps, engine.image_factor, args.video_backend),
    )
    stats = job.run(samples, engine, judge or default_judge())
    print(json.dumps(stats, indent=2))
    return stats


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main(sys.argv[1:])
    sys.exit(0)
