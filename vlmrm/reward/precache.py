"""Fill the frame cache ahead of training: ``python -m vlmrm.data.precache --config run.yaml``.

Decodes every distinct video of the config's training and held-out CSVs with the run's sampling,
backend and the model's resize factor (read from its processor, no weights loaded), so the keys are
the ones training will look up. ``--num_workers`` decoder processes, a progress bar, and a summary;
a video that cannot be decoded is listed (file: reason) and the exit status is 1, the rest cached.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from transformers import AutoProcessor

from vlmrm.core.progress import progress
from vlmrm.media.frame_cache import FrameCache
from vlmrm.media.processor import image_factor
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import VideoDecodeError, resolve_backend
from vlmrm.pairs.video_pairs import parse_video_pair_csv
from vlmrm.reward.config import parse_config


class _CacheFill(torch.utils.data.Dataset):
    """Item i: decode (or find) video i in the cache; returns (path, hit, error) — never raises."""

    def __init__(self, paths: list[Path], cache: FrameCache, sampling: FrameSampling, backend_name, factor):
        self.paths, self.cache, self.sampling = paths, cache, sampling
        self.backend_name, self.factor = backend_name, factor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        hits = self.cache.hits
        try:
            self.cache.load(path, self.sampling, resolve_backend(self.backend_name), self.factor)
        except VideoDecodeError as err:
            return str(path), False, err.reason
        return str(path), self.cache.hits > hits, None


def distinct_videos(data) -> list[Path]:
    """Every video path of the config's training and held-out CSVs, once, in first-seen order."""
    paths: dict[Path, None] = {}
    for csv in (data.meta_data, data.meta_data_test):
        if csv:
            table = parse_video_pair_csv(csv, data.eval_dim, data.data_dir, data.use_tied_data)
            for pair in table.pairs:
                paths.update({pair.path_a: None, pair.path_b: None})
    return list(paths)


def precache(config: str, overrides: list[str] | None = None, num_workers: int = 0) -> dict:
    cfg = parse_config(config, overrides)
    data = cfg.data
    if not data.frame_cache_dir:
        raise SystemExit(f"{config}: frame_cache_dir is not set (add it, or pass --frame_cache_dir DIR)")
    if data.is_image_data():
        raise SystemExit(f"{config}: the frame cache is for video pairs; {data.meta_data} holds images")
    factor = image_factor(AutoProcessor.from_pretrained(cfg.model.model_name_or_path))
    cache = FrameCache(data.frame_cache_dir, data.frame_cache_max_gb)
    paths = distinct_videos(data)
    fill = _CacheFill(paths, cache, FrameSampling.from_data_config(data), data.video_backend, factor)
    loader = torch.utils.data.DataLoader(fill, batch_size=None, num_workers=num_workers)
    summary = {"videos": len(paths), "cached_before": 0, "decoded": 0, "failed": 0}
    for path, hit, error in progress(loader, "precache videos", total=len(paths), unit="videos"):
        if error is not None:
            summary["failed"] += 1
            print(f"{path}: {error}", file=sys.stderr)
        else:
            summary["cached_before" if hit else "decoded"] += 1
    cache.evict()
    entries = cache.entries()
    summary.update(cache_dir=str(cache.root), entries=len(entries), bytes=sum(s for _, s, _ in entries))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmrm.data.precache", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the training YAML")
    parser.add_argument("--num_workers", type=int, default=0, help="decoder processes (0 = this one)")
    args, overrides = parser.parse_known_args(argv)
    summary = precache(str(args.config), overrides, args.num_workers)
    print(json.dumps(summary))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
