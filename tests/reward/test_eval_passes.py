"""A final model is reused only when its weight bytes and scoring spec equal a scored checkpoint's;
collated batches only when everything they depend on is equal."""

import copy
import dataclasses
import shutil

import numpy as np
import pytest
import torch

from vlmrm.modeling.loading import load_reward_model
from vlmrm.modeling.reward_model import RewardSpec
from vlmrm.reward.collator import PairCollator
from vlmrm.reward.eval_passes import CollatedBatches, PairScores, ScoredCheckpoints, batch_key, score_pairs
from vlmrm.reward.evaluate import load_eval_data, parse_eval_config


def checkpoint(folder, data: bytes):
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(data)
    return folder


def test_identical_weights_and_spec_are_found_and_anything_else_is_not(tmp_path):
    spec = RewardSpec(eval_dim=["VQ"], output_dim=1, sampling={"num_frames": 8})
    scores = PairScores(np.zeros((1, 2, 1)), None)
    scored = ScoredCheckpoints()
    step4 = checkpoint(tmp_path / "checkpoint-4", b"weights-1")
    scored.add(step4, spec, "data", scores)
    final = tmp_path / "final"
    shutil.copytree(step4, final)
    normalised = RewardSpec(**{**vars(spec), "normalization": {"VQ": {"mean": 0.0, "std": 1.0}}})
    assert scored.find(final, normalised).checkpoint == step4  # set after training: same rewards
    other_sampling = RewardSpec(**{**vars(spec), "sampling": {"num_frames": 4}})
    assert scored.find(final, other_sampling) is None
    same_size = checkpoint(tmp_path / "other", b"weights-2")
    assert scored.find(same_size, spec) is None
    assert scored.find(checkpoint(tmp_path / "empty", b""), spec) is None


@pytest.fixture
def scoring(reward_checkpoint, make_video, make_csv):
    """The tiny reward checkpoint, its collator and a 3-pair dataset as eval_rm builds them."""
    model, processor = load_reward_model(reward_checkpoint)
    videos = [make_video(f"v{i}.mp4") for i in range(2)]
    rows = [
        {
            "path_A": videos[i % 2].name,
            "path_B": videos[1 - i % 2].name,
            "prompt": f"p{i}",
            "VQ": "A",
            "MQ": "B",
            "TA": "same",
        }
        for i in range(3)
    ]
    config = parse_eval_config(
        values={"model_dirs": [str(reward_checkpoint)], "dataset_path": str(make_csv(rows))}
    )
    data = load_eval_data(config, model.reward_spec, processor)
    assert len(data.dataset) == len(rows), data.skipped
    return model, PairCollator.from_spec(processor, model.reward_spec), data.dataset


def test_collated_batches_are_replayed_only_for_the_same_processor_template_sampling_data_and_size(
    scoring, monkeypatch
):
    model, collator, dataset = scoring
    collated = CollatedBatches.of_megabytes(64)
    first = score_pairs(model, collator, dataset, 2, True, 1, collated=collated)  # a decoding worker
    assert collated.key == batch_key(collator, dataset, 2) and len(collated.batches) == 2
    kept = [v for batch in collated.batches for v in batch.values() if isinstance(v, torch.Tensor)]
    assert kept and not any(v.is_shared() for v in kept)  # copied out of the worker's shared memory

    def no_decoding(index):
        raise AssertionError("a replayed checkpoint must not decode or collate")

    monkeypatch.setattr(dataset, "_item", no_decoding)
    replayed = score_pairs(model, collator, dataset, 2, True, collated=collated)
    np.testing.assert_array_equal(replayed.rewards, first.rewards)
    np.testing.assert_array_equal(replayed.swapped, first.swapped)

    key = batch_key(collator, dataset, 2)
    assert batch_key(collator, dataset, 3) != key
    resampled = copy.copy(dataset)
    resampled.sampling = dataclasses.replace(dataset.sampling, num_frames=dataset.sampling.num_frames * 2)
    assert batch_key(collator, resampled, 2) != key
    assert batch_key(dataclasses.replace(collator, template_type="simple"), dataset, 2) != key
    other_tokens = copy.deepcopy(collator.processor)
    other_tokens.tokenizer.add_tokens(["<extra_reward_token>"], special_tokens=True)
    assert batch_key(dataclasses.replace(collator, processor=other_tokens), dataset, 2) != key
    assert (
        batch_key(dataclasses.replace(collator, processor=copy.deepcopy(collator.processor)), dataset, 2)
        == key
    )


def test_batches_over_the_limit_are_not_kept(scoring):
    model, collator, dataset = scoring
    collated = CollatedBatches(limit_bytes=1)
    scores = score_pairs(model, collator, dataset, 2, False, collated=collated)
    assert collated.key is None and collated.batches == [] and scores.rewards.shape[0] == len(dataset)
