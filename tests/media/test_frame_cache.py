"""Disk frame cache: a hit equals a decode, any change of file or parameter misses, writes are atomic,
eviction keeps the size limit, and the precache CLI fills what training reads."""

import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoProcessor

from vlmrm.media.frame_cache import FrameCache
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import load_video, resolve_backend
from vlmrm.pairs.video_pairs import VideoPairDataset, load_video_pairs
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import build_datasets
from vlmrm.testing.tiny import tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
SMALL = FrameSampling(num_frames=4, min_pixels=56 * 56, max_pixels=56 * 56)


def same_video(a, b) -> bool:
    return (
        torch.equal(a.frames, b.frames)
        and a.indices == b.indices
        and a.info == b.info
        and a.sample_fps == pytest.approx(b.sample_fps)
    )


def test_hit_equals_a_fresh_decode_and_skips_the_decoder(make_video, tmp_path):
    path = make_video("v.mp4", num_frames=16, fps=8)
    backend = resolve_backend("pyav")
    cache = FrameCache(tmp_path / "cache")
    first = cache.load(path, SMALL, backend)
    assert (cache.hits, cache.misses) == (0, 1) and len(cache.entries()) == 1

    def no_decoding(*args):
        raise AssertionError("a cache hit decoded the video")

    again = FrameCache(tmp_path / "cache").load(path, SMALL, dataclasses.replace(backend, read=no_decoding))
    assert same_video(again, first) and same_video(again, load_video(path, SMALL, resolve_backend("decord")))


@pytest.mark.parametrize(
    "change",
    [
        {"num_frames": 6},
        {"min_pixels": 112 * 112, "max_pixels": 112 * 112},
        {"num_frames": None, "fps": 4.0},
        {"num_frames": None, "fps": 2.0, "max_frames": 4},
    ],
)
def test_every_sampling_parameter_is_part_of_the_key(make_video, tmp_path, change):
    path = make_video("v.mp4", num_frames=16, fps=8)
    backend = resolve_backend("pyav")
    changed = FrameSampling(**{**SMALL.__dict__, **change})
    assert FrameCache.key(path, SMALL, backend, 28) != FrameCache.key(path, changed, backend, 28)
    cache = FrameCache(tmp_path / "cache")
    cache.load(path, SMALL, backend)
    assert same_video(cache.load(path, changed, backend), load_video(path, changed, backend))
    assert cache.misses == 2


def test_backend_factor_and_a_rewritten_file_are_new_keys(make_video, tmp_path):
    path = make_video("v.mp4", num_frames=16, fps=8)
    pyav, decord = resolve_backend("pyav"), resolve_backend("decord")
    assert FrameCache.key(path, SMALL, pyav, 28) != FrameCache.key(path, SMALL, decord, 28)
    assert FrameCache.key(path, SMALL, pyav, 28) != FrameCache.key(path, SMALL, pyav, 32)
    cache = FrameCache(tmp_path / "cache")
    old = cache.load(path, SMALL, pyav)
    make_video("v.mp4", num_frames=24, fps=8)  # same name, new content (size and mtime change)
    fresh = cache.load(path, SMALL, pyav)
    assert cache.misses == 2 and fresh.info.total_frames == 24 != old.info.total_frames


def test_a_corrupt_entry_is_dropped_and_decoded_again(make_video, tmp_path):
    path = make_video("v.mp4")
    backend = resolve_backend("pyav")
    cache = FrameCache(tmp_path / "cache")
    decoded = cache.load(path, SMALL, backend)
    (_, _, entry), *_ = cache.entries()
    entry.write_bytes(b"not a cache entry")
    assert same_video(cache.load(path, SMALL, backend), decoded) and cache.misses == 2


def test_a_cut_entry_is_dropped_and_decoded_again(make_video, tmp_path):
    path = make_video("v.mp4")
    backend = resolve_backend("pyav")
    cache = FrameCache(tmp_path / "cache")
    decoded = cache.load(path, SMALL, backend)
    (_, size, entry), *_ = cache.entries()
    entry.write_bytes(entry.read_bytes()[: size - 1])  # one frame byte short
    assert same_video(cache.load(path, SMALL, backend), decoded) and cache.misses == 2


def test_eviction_deletes_least_recently_used_entries_to_the_limit(make_video, tmp_path):
    paths = [make_video(f"v{i}.mp4", num_frames=16 + 2 * i) for i in range(4)]
    backend = resolve_backend("pyav")
    cache = FrameCache(tmp_path / "cache")
    for age, path in enumerate(paths):
        cache.load(path, SMALL, backend)
        (entry,) = [e for _, _, e in cache.entries() if e.stem == cache.key(path, SMALL, backend, 28)]
        os.utime(entry, (time.time() - 100 + age, time.time() - 100 + age))  # v0 oldest ... v3 newest
    cache.load(paths[0], SMALL, backend)  # a hit makes v0 the most recently used
    sizes = {e.stem: s for _, s, e in cache.entries()}
    keys = [cache.key(p, SMALL, backend, 28) for p in paths]
    cache.max_bytes = sizes[keys[0]] + sizes[keys[3]]  # room for exactly two entries
    assert cache.evict() == 2
    assert {e.stem for _, _, e in cache.entries()} == {keys[0], keys[3]}


def _hammer(args):
    root, path, rounds = args
    backend = resolve_backend("pyav")
    cache = FrameCache(root)
    frames = []
    for _ in range(rounds):
        entry = cache.entry_path(cache.key(path, SMALL, backend, 28))
        entry.unlink(missing_ok=True)  # force a write every round, racing the other processes
        frames.append(cache.load(path, SMALL, backend).frames)
    return torch.stack(frames)


@pytest.mark.slow
def test_concurrent_writers_of_one_key_never_expose_a_partial_entry(make_video, tmp_path):
    path = make_video("v.mp4")
    expected = load_video(path, SMALL, resolve_backend("pyav")).frames
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_hammer, [(tmp_path / "cache", path, 15)] * 3)
    assert all(torch.equal(frames, expected) for result in results for frames in result)
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_random_sampling_cannot_be_cached(synthetic_pairs, tmp_path):
    table = load_video_pairs(synthetic_pairs / "train.csv", ["VQ"], synthetic_pairs)
    random = FrameSampling(num_frames=4, sample_type="random")
    with pytest.raises(ValueError, match="frame_cache_dir needs sample_type: uniform"):
        VideoPairDataset(table, random, resolve_backend("pyav"), frame_cache=FrameCache(tmp_path / "c"))


def test_a_dataset_knows_when_every_video_is_cached_and_evaluation_then_starts_no_workers(
    synthetic_pairs, tmp_path
):
    from vlmrm.reward.eval_passes import DEFAULT_EVAL_WORKERS, eval_workers

    table = load_video_pairs(synthetic_pairs / "test.csv", ["VQ"], synthetic_pairs)
    dataset = VideoPairDataset(table, SMALL, resolve_backend("pyav"), frame_cache=FrameCache(tmp_path / "c"))
    decoding = min(DEFAULT_EVAL_WORKERS, os.cpu_count() or 1)
    assert not dataset.frames_cached() and eval_workers(None, dataset) == decoding
    for index in range(len(dataset) - 1):
        dataset[index]
    assert not dataset.frames_cached(), "the last pair is not cached yet"
    dataset[len(dataset) - 1]
    assert dataset.frames_cached() and eval_workers(None, dataset) == 0
    assert eval_workers(3, dataset) == 3  # an explicit dataloader_num_workers always wins
    other = dataclasses.replace(SMALL, num_frames=2)
    assert not VideoPairDataset(
        table, other, resolve_backend("pyav"), frame_cache=FrameCache(tmp_path / "c")
    ).frames_cached()
    assert not VideoPairDataset(table, SMALL, resolve_backend("pyav")).frames_cached()


@pytest.mark.slow
def test_precache_fills_what_the_training_dataset_reads(synthetic_pairs, tiny_cache, tmp_path):
    config = {
        "model_name_or_path": str(tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache)),
        "meta_data": str(synthetic_pairs / "train.csv"),
        "meta_data_test": str(synthetic_pairs / "test.csv"),
        "data_dir": str(synthetic_pairs),
        "num_frames": 4,
        "min_frame_pixels": 3136,
        "max_frame_pixels": 3136,
        "video_backend": "pyav",
        "frame_cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "vlmrm.data.precache", "--config", str(path), "--num_workers", "2"]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    videos = {p for csv in ("train.csv", "test.csv") for p in _videos(synthetic_pairs / csv, synthetic_pairs)}
    assert summary["videos"] == summary["decoded"] == summary["entries"] == len(videos)
    second = json.loads(
        subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    )
    assert second["cached_before"] == len(videos) and second["decoded"] == 0

    train, _ = build_datasets(parse_config(path), AutoProcessor.from_pretrained(config["model_name_or_path"]))
    for index in range(len(train)):
        train[index]
    assert train.frame_cache.misses == 0 and train.frame_cache.hits == 2 * len(train)


def _videos(csv: Path, root: Path) -> list[Path]:
    table = load_video_pairs(csv, ["VQ"], root)
    return [p for pair in table.pairs for p in (pair.path_a, pair.path_b)]
