"""Reward model on every tiny family: forward, pooling, special tokens, save/reload bit-identical."""

import pytest
import torch

from tests.conftest import tiny_run_values
from vlmrm.modeling.loading import build_reward_model, load_reward_model
from vlmrm.modeling.reward_model import RewardSpec, pool_hidden_states, special_token_rewards
from vlmrm.reward.collator import PairCollator
from vlmrm.reward.config import parse_config
from vlmrm.reward.train import build_datasets
from vlmrm.testing.tiny import tiny_checkpoint


def build(tiny_cache, synthetic_pairs, tmp_path, family="qwen2_vl", **overrides):
    values = tiny_run_values(
        tiny_checkpoint(family, cache_dir=tiny_cache), synthetic_pairs, tmp_path / "out", **overrides
    )
    cfg = parse_config(values=values)
    model, processor = build_reward_model(cfg.model, cfg.data, cfg.training)
    train, _ = build_datasets(cfg, processor)
    collator = PairCollator(processor, cfg.data.eval_dim, cfg.data.prompt_template_type)
    batch = collator([train[0], train[1]])
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "pair_ids")}
    return cfg, model, processor, inputs


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_each_family_scores_and_reloads_bit_identical(family, tiny_cache, synthetic_pairs, tmp_path):
    cfg, model, processor, inputs = build(tiny_cache, synthetic_pairs, tmp_path, family)
    model.eval()
    with torch.no_grad():
        rewards = model(**inputs).rewards
    assert rewards.shape == (4, 3) and rewards.dtype == torch.float32
    assert torch.isfinite(rewards).all()
    assert rewards[0].ne(rewards[2]).any()  # A and B videos differ, so must their rewards
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    loaded, _loaded_processor = load_reward_model(tmp_path / "ckpt")
    with torch.no_grad():
        again = loaded(**inputs).rewards
    assert torch.equal(rewards, again)
    assert loaded.reward_spec.eval_dim == ["VQ", "MQ", "TA"]
    assert loaded.reward_spec.base_model_name_or_path == cfg.model.model_name_or_path
    assert type(loaded).__name__.endswith("RewardModel")


@pytest.mark.parametrize("dims", [["VQ"], ["VQ", "MQ", "TA"], ["VQ", "MQ", "TA", "VQ2", "MQ2"]])
def test_any_number_of_dimensions(dims, tiny_cache, synthetic_pairs, tmp_path):
    # the synthetic CSV has VQ/MQ/TA only: extra dims reuse its columns through a copied CSV
    import pandas as pd

    frame = pd.read_csv(synthetic_pairs / "train.csv")
    for extra in dims:
        if extra not in frame:
            frame[extra] = frame[extra[:2]]
    csv_path = tmp_path / "train.csv"
    frame.to_csv(csv_path, index=False)
    _, model, _, inputs = build(
        tiny_cache, synthetic_pairs, tmp_path, eval_dim=dims, meta_data=str(csv_path), meta_data_test=None
    )
    assert model.reward_spec.output_dim == len(dims)
    with torch.no_grad():
        assert model(**inputs).rewards.shape == (4, len(dims))


def test_special_tokens_one_reward_per_token(tiny_cache, synthetic_pairs, tmp_path):
    _, model, processor, inputs = build(
        tiny_cache,
        synthetic_pairs,
        tmp_path,
        use_special_tokens=True,
        reward_token="special",
        prompt_template_type="detailed_special",
    )
    spec = model.reward_spec
    tokenizer = processor.tokenizer
    assert spec.output_dim == 1
    assert spec.reward_token_ids == tokenizer.convert_tokens_to_ids(
        ["<|VQ_reward|>", "<|MQ_reward|>", "<|TA_reward|>"]
    )
    embeddings = model.get_input_embeddings().weight
    original = embeddings[: min(spec.reward_token_ids)]
    for token_id in spec.reward_token_ids:  # new rows start at the mean of the original vocabulary
        assert torch.allclose(embeddings[token_id], original.mean(dim=0), atol=1e-6)
    for token_id in spec.reward_token_ids:
        assert ((inputs["input_ids"] == token_id).sum(dim=1) == 1).all()
    with torch.no_grad():
        assert model(**inputs).rewards.shape == (4, 3)


def test_special_token_rewards_share_one_head_or_read_the_diagonal():
    outputs = torch.arange(2 * 3 * 3, dtype=torch.float32).view(2, 3, 3)  # (N, D tokens, 3 outputs)
    # token d reads output d: entries (d, d) of each 3x3 block, i.e. values 0, 4, 8 and 9, 13, 17
    assert special_token_rewards(outputs).tolist() == [[0.0, 4.0, 8.0], [9.0, 13.0, 17.0]]
    shared = outputs[..., :1]  # one shared output per token
    assert special_token_rewards(shared).tolist() == [[0.0, 3.0, 6.0], [9.0, 12.0, 15.0]]


def spec(reward_token, ids=()):
    return RewardSpec(
        eval_dim=["a", "b"], output_dim=1, reward_token=reward_token, reward_token_ids=list(ids)
    )


def test_pooling_picks_the_right_positions():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)  # value = row * 4 + position
    right_padded = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left_padded = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    ids = torch.tensor([[5, 7, 9, 0], [7, 5, 0, 0]])
    assert pool_hidden_states(hidden, ids, right_padded, spec("last")).flatten().tolist() == [2.0, 5.0]
    assert pool_hidden_states(hidden, ids, left_padded, spec("last")).flatten().tolist() == [3.0, 7.0]
    # mean of positions 0..2 of row 0 = (0 + 1 + 2) / 3 = 1; of positions 0..1 of row 1 = (4 + 5) / 2 = 4.5
    assert pool_hidden_states(hidden, ids, right_padded, spec("mean")).flatten().tolist() == [1.0, 4.5]
    special = pool_hidden_states(hidden, ids, right_padded, spec("special", [5, 7]))
    assert special.shape == (2, 2, 1)
    assert special.squeeze(-1).tolist() == [[0.0, 1.0], [5.0, 4.0]]
    with pytest.raises(ValueError, match="appears 0 times in sequence 0"):
        pool_hidden_states(hidden, ids, right_padded, spec("special", [5, 11]))


def test_loading_a_backbone_as_reward_checkpoint_is_a_clear_error(tiny_cache):
    with pytest.raises(ValueError, match="not a vlmrm reward checkpoint"):
        load_reward_model(tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache))
