"""What every CPU benchmark here shares: the tiny model + synthetic video pairs, set up like the
quickstart (8 frames of 56x56 per video), and median timing after warm-up.

Imported by the scripts beside it (``python benchmarks/<name>.py`` puts this folder on the path).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vlmrm.media.processor import image_factor
from vlmrm.modeling.loading import build_reward_model
from vlmrm.reward.config import RunConfig, parse_config
from vlmrm.reward.train import build_datasets, build_trainer
from vlmrm.testing.synthetic import SyntheticVideoConfig, generate_video_pairs
from vlmrm.testing.tiny import tiny_checkpoint

WARMUP = 3
"""Untimed repetitions first: allocator, thread pools and file caches settle."""
BENCH_FRAMES = 8
BENCH_PIXELS = 56 * 56  # one 2 x 2 grid of merged 28 px tokens per frame, as in the quickstart


@dataclass
class TinyBench:
    cfg: RunConfig
    model: torch.nn.Module
    processor: object
    train: torch.utils.data.Dataset
    test: torch.utils.data.Dataset | None
    trainer: object
    work: Path

    @property
    def factor(self) -> int:
        return image_factor(self.processor)


def tiny_bench(
    num_train: int, num_test: int = 0, family: str = "qwen2_vl", frame_cache: bool = False, **values
) -> TinyBench:
    """Tiny checkpoint (built once, cached), fresh synthetic mp4 pairs in a temp folder, the run's
    datasets and trainer, built by the same functions training uses (``frame_cache``: an empty
    frame cache in the temp folder)."""
    work = Path(tempfile.mkdtemp(prefix="vlmrm-bench-"))
    data = generate_video_pairs(
        SyntheticVideoConfig(out_dir=work / "data", num_train=num_train, num_test=num_test)
    ).out_dir
    cfg = parse_config(
        values={
            "model_name_or_path": str(tiny_checkpoint(family)),
            "torch_dtype": "float32",
            "meta_data": str(data / "train.csv"),
            "meta_data_test": str(data / "test.csv") if num_test else None,
            "data_dir": str(data),
            "num_frames": BENCH_FRAMES,
            "min_frame_pixels": BENCH_PIXELS,
            "max_frame_pixels": BENCH_PIXELS,
            "prompt_template_type": "simple",
            "output_dir": str(work / "out"),
            "use_cpu": True,
            "report_to": "none",
            "disable_tqdm": True,
            "frame_cache_dir": str(work / "frame_cache") if frame_cache else None,
            **values,
        }
    )
    model, processor = build_reward_model(cfg.model, cfg.data, cfg.training)
    train, test = build_datasets(cfg, processor)
    trainer = build_trainer(cfg, model, processor, train, test)
    return TinyBench(cfg, model, processor, train, test, trainer, work)


def interleaved_medians(ways: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each way, the ways taking turns so machine noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for repeat in range(WARMUP + repeats):
        for name, way in ways.items():
            start = time.perf_counter()
            way()
            if repeat >= WARMUP:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def machine() -> str:
    import platform

    import transformers

    return (
        f"{platform.machine()} CPU x{torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )
