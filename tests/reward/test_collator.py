"""The collator builds real processor inputs for both sides of each pair (every tiny family)."""

import re

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from vlmrm.media.processor import image_factor
from vlmrm.media.sampling import FrameSampling
from vlmrm.media.video import resolve_backend
from vlmrm.pairs.video_pairs import VideoPairDataset, load_video_pairs
from vlmrm.reward.collator import PairCollator
from vlmrm.testing.tiny import tiny_checkpoint

DIMS = ["VQ", "MQ", "TA"]


@pytest.fixture
def pair_dataset(make_csv, make_video):
    def build(processor):
        make_video("videos/a.mp4", num_frames=16, fps=8)
        make_video("videos/b.mp4", num_frames=30, fps=10)
        rows = [
            {
                "path_A": "videos/a.mp4",
                "path_B": "videos/b.mp4",
                "prompt": "a red square",
                "VQ": "A",
                "MQ": "B",
                "TA": "same",
            },
            {
                "path_A": "videos/b.mp4",
                "path_B": "videos/a.mp4",
                "prompt": "a blue circle moving up",
                "VQ": "B",
                "MQ": "same",
                "TA": "A",
            },
        ]
        table = load_video_pairs(make_csv(rows), DIMS)
        factor = image_factor(processor)
        sampling = FrameSampling(min_pixels=(2 * factor) ** 2, max_pixels=(2 * factor) ** 2)
        return VideoPairDataset(table, sampling, resolve_backend("pyav"), image_factor=factor)

    return build


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_collated_batch_runs_through_the_backbone(family, pair_dataset, tiny_cache):
    path = tiny_checkpoint(family, cache_dir=tiny_cache)
    processor = AutoProcessor.from_pretrained(path)
    dataset = pair_dataset(processor)
    collator = PairCollator(processor, DIMS, "detailed")
    batch = collator([dataset[0], dataset[1]])

    assert batch["input_ids"].shape[0] == 4  # 2 pairs -> A, A, B, B
    assert torch.equal(batch["labels"], torch.tensor([[1.0, -1.0, 0.0], [-1.0, 0.0, 1.0]]))
    assert batch["pair_ids"].tolist() == [2, 3]  # CSV lines (header = line 1)
    # grid (frames / temporal patch, 2, 2): pair 0's A has 4 frames, its B 6; pair 1 the reverse
    assert batch["video_grid_thw"][:, 0].tolist() == [2, 3, 3, 2]
    merge = processor.video_processor.merge_size
    video_token = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    tokens_per_video = (batch["input_ids"] == video_token).sum(dim=1)
    assert tokens_per_video.tolist() == (batch["video_grid_thw"].prod(dim=1) // merge**2).tolist()
    assert (batch["mm_token_type_ids"] == 2).sum(dim=1).tolist() == tokens_per_video.tolist()

    model = AutoModelForImageTextToText.from_pretrained(path)
    model_inputs = {k: v for k, v in batch.items() if k not in ("labels", "pair_ids")}
    with torch.no_grad():
        out = model(**model_inputs, output_hidden_states=True)
    assert out.hidden_states[-1].shape[:2] == batch["input_ids"].shape
    assert torch.isfinite(out.hidden_states[-1]).all()


def test_prompt_template_reaches_the_text(pair_dataset, tiny_cache):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache))
    text = PairCollator(processor, ["TA"], "simple").chat_text("a red square")
    assert "Please evaluate the text alignment of a generated video" in text
    assert '"a red square"' in text
    assert text.rstrip().endswith("assistant")


def test_over_long_pairs_are_an_error_naming_file_and_line(pair_dataset, tiny_cache):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache))
    dataset = pair_dataset(processor)
    collator = PairCollator(processor, DIMS, "simple", max_length=30)
    csv = re.escape(str(dataset.table.source))
    with pytest.raises(ValueError, match=rf"max_length=30 \({csv}:2: \d+ tokens, {csv}:3: \d+ tokens\)"):
        collator([dataset[0], dataset[1]])


def test_unknown_template_is_an_error(tiny_cache):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint("qwen2_vl", cache_dir=tiny_cache))
    with pytest.raises(ValueError, match="unknown 'fancy'; available: none, simple"):
        PairCollator(processor, DIMS, "fancy")
