"""Zero usable pairs stop a run before the model loads; a pair failing inside the loop is named by
file:line [column] (error) or skipped, substituted and counted (skip)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import tiny_run_values
from vlmrm.core.problems import DataValidationError
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import resolve_backend
from vlmrm.pairs.image_pairs import ImagePairDataset, load_image_pairs
from vlmrm.pairs.samples import SKIPPED_KEY, SampleError
from vlmrm.pairs.video_pairs import VideoPairDataset, load_video_pairs
from vlmrm.reward.config import parse_config
from vlmrm.reward.pair_forward import NON_MODEL_KEYS
from vlmrm.reward.train import run_training

DIMS = ["VQ", "MQ", "TA"]
SMALL = FrameSampling(num_frames=4, min_pixels=56 * 56, max_pixels=56 * 56)


def pair(path_a: str, path_b: str) -> dict:
    return {"path_A": path_a, "path_B": path_b, "prompt": "p", "VQ": "A", "MQ": "B", "TA": "same"}


def zero_pair_run(tmp_path, csv, **overrides):
    """A run whose model folder exists (the fail-fast path check passes) but holds no model, so
    reaching the loader would raise OSError instead of the zero-pairs message."""
    (tmp_path / "not_a_model").mkdir(exist_ok=True)
    values = tiny_run_values(tmp_path / "not_a_model", tmp_path, tmp_path / "out", meta_data_test=None)
    values.update(meta_data=str(csv), **overrides)
    return parse_config(values=values)


@pytest.mark.parametrize("content", ["header", "empty", "all_skipped"])
def test_zero_usable_pairs_stop_before_the_model_loads(tmp_path, make_csv, make_video, content):
    if content == "header":
        csv = make_csv([])
    elif content == "empty":
        csv = tmp_path / "pairs.csv"
        csv.write_text("")
    else:
        make_video("videos/ok.mp4")
        csv = make_csv([pair("videos/gone.mp4", "videos/ok.mp4"), pair("videos/ok.mp4", "videos/gone2.mp4")])
    cfg = zero_pair_run(tmp_path, csv, on_bad_sample="skip")
    with pytest.raises(DataValidationError) as caught:
        run_training(cfg)  # the model folder is empty: reaching the loader would raise OSError
    first = caught.value.problems[0]
    assert first.file == str(csv) and first.message.startswith("no usable pairs"), str(caught.value)


def video_dataset(tmp_path, make_csv, make_video, on_bad_sample):
    for name in ("a", "b", "c"):
        make_video(f"videos/{name}.mp4")
    csv = make_csv([pair("videos/a.mp4", "videos/b.mp4"), pair("videos/c.mp4", "videos/a.mp4")])
    table = load_video_pairs(csv, DIMS)
    dataset = VideoPairDataset(table, SMALL, resolve_backend("pyav"), on_bad_sample=on_bad_sample)
    (tmp_path / "videos/c.mp4").write_bytes(b"changed after validation")
    return csv, dataset


def test_a_video_failing_in_the_loop_names_file_line_and_column(tmp_path, make_csv, make_video):
    csv, dataset = video_dataset(tmp_path, make_csv, make_video, "error")
    assert dataset[0][SKIPPED_KEY] == []
    with pytest.raises(SampleError, match=rf"^{csv}:3 \[path_A\]: .*c\.mp4"):
        dataset[1]
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1, sampler=[1])
    with pytest.raises(SampleError, match=rf"{csv}:3 \[path_A\]"):  # survives a worker's re-raise
        next(iter(loader))


def test_a_video_failing_in_the_loop_is_skipped_and_counted(tmp_path, make_csv, make_video):
    csv, dataset = video_dataset(tmp_path, make_csv, make_video, "skip")
    item = dataset[1]
    assert item["pair_id"] == 2 and item[SKIPPED_KEY] == [f"{csv}:3"]  # line 2 stands in for line 3
    assert dataset[1][SKIPPED_KEY] == [f"{csv}:3"]  # remembered: not decoded again
    assert SKIPPED_KEY in NON_MODEL_KEYS


def test_an_image_failing_in_the_loop_is_named_or_skipped(tmp_path):
    for name, colour in (("a", "red"), ("b", "blue"), ("c", "green")):
        Image.new("RGB", (8, 8), colour).save(tmp_path / f"{name}.png")
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(
        '{"prompt": "x", "image_A": "a.png", "image_B": "b.png", "label": "A"}\n'
        '{"prompt": "y", "image_A": "b.png", "image_B": "c.png", "label": "B"}\n'
    )
    table, _ = load_image_pairs(jsonl)
    (tmp_path / "a.png").write_bytes(np.zeros(10, np.uint8).tobytes())
    with pytest.raises(SampleError, match=rf"^{jsonl}:1 \[images_A\]: "):
        ImagePairDataset(table)[0]
    skipping = ImagePairDataset(table, on_bad_sample="skip")
    item = skipping[0]
    assert item["pair_id"] == 2 and item[SKIPPED_KEY] == [f"{jsonl}:1"]
    (tmp_path / "c.png").write_bytes(b"")
    with pytest.raises(SampleError, match="every pair failed"):
        skipping[1]


def test_sequence_length_is_checked_at_validation_as_the_collator_counts(
    tmp_path, make_csv, make_video, tiny_cache
):
    from transformers import AutoProcessor

    from vlmrm.reward.collator import PairCollator
    from vlmrm.reward.validate import validate_run_data
    from vlmrm.testing.tiny import tiny_checkpoint

    checkpoint = tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache)
    make_video("videos/a.mp4")
    make_video("videos/b.mp4", num_frames=24)
    short, long = pair("videos/a.mp4", "videos/b.mp4"), pair("videos/b.mp4", "videos/a.mp4")
    long["prompt"] = "a very long prompt " * 20
    csv = make_csv([short, long])
    values = tiny_run_values(checkpoint, tmp_path, tmp_path / "out", meta_data_test=None, meta_data=str(csv))
    processor = AutoProcessor.from_pretrained(checkpoint)
    collator = PairCollator.from_config(processor, parse_config(values=values))
    dataset = VideoPairDataset(load_video_pairs(csv, DIMS), SMALL, resolve_backend("pyav"), image_factor=28)
    real = [int(collator.sequence_lengths(collator([dataset[i]]), 1).max()) for i in range(2)]
    assert real[1] > real[0]

    fits = parse_config(values={**values, "max_length": real[0]})  # the short pair exactly fits
    with pytest.raises(DataValidationError) as caught:
        validate_run_data(fits)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.kind) == (str(csv), 3, "too_long")
    assert problem.message.startswith(f"{real[1]} tokens")

    skipping = parse_config(values={**values, "max_length": real[0], "on_bad_sample": "skip"})
    [report] = validate_run_data(skipping)
    assert report.summary["usable_pairs"] == 1 and report.summary["bad_lines"] == 1
    with pytest.raises(DataValidationError, match="no usable pairs"):
        validate_run_data(parse_config(values={**values, "max_length": real[0] - 1, "on_bad_sample": "skip"}))


def test_training_skips_and_counts_a_pair_that_breaks_after_validation(tiny_cache, synthetic_pairs, tmp_path):
    import csv as csv_module
    import shutil

    from transformers import TrainerCallback

    from vlmrm.reward.train import LOOP_SKIPS_METRIC
    from vlmrm.testing.tiny import tiny_checkpoint

    data = shutil.copytree(synthetic_pairs, tmp_path / "data")
    with (data / "train.csv").open() as handle:
        first = next(csv_module.DictReader(handle))
    broken = data / first["path_A"]

    class BreakAVideo(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            broken.write_bytes(b"overwritten after validation")

    values = tiny_run_values(
        tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache),
        data,
        tmp_path / "out",
        meta_data_test=None,
        max_train_samples=4,
        max_steps=1,  # one batch of the 4 pairs: the broken one comes up
        normalization_pairs=0,
        on_bad_sample="skip",
    )
    metrics = run_training(parse_config(values=values), callbacks=[BreakAVideo()])
    assert metrics[LOOP_SKIPS_METRIC] == 1
