"""A checkpoint scores with the frames it trained on: every sampling option is recorded."""

from vlmrm.media.sampling import FrameSampling, num_sampled_frames
from vlmrm.modeling.loading import build_spec
from vlmrm.modeling.reward_model import RewardSpec
from vlmrm.reward.config import parse_config


def test_spec_records_the_new_sampling_options():
    cfg = parse_config(
        values={
            "eval_dim": ["VQ"],
            "frame_rounding": "round",
            "short_video": "all_frames",
            "total_pixels": 4096 * 28 * 28,
            "max_frame_pixels": 0,  # qwen-vl-utils' caps alone
            "output_dir": "unused",
            "report_to": "none",
        }
    )
    spec = build_spec(cfg.model, cfg.data, cfg.training, [])
    restored = RewardSpec.from_dict(spec.to_dict()).frame_sampling()
    assert restored == FrameSampling(
        frame_rounding="round", short_video="all_frames", total_pixels=4096 * 28 * 28, max_pixels=None
    )
    assert num_sampled_frames(31, 8.0, restored) == 8  # VideoAlign's count, not qwen-vl-utils' 6


def test_old_checkpoint_sampling_keeps_its_values():
    old = {
        "fps": 2.0,
        "num_frames": None,
        "min_frames": 4,
        "max_frames": 768,
        "sample_type": "uniform",
        "min_pixels": 100352,
        "max_pixels": 200704,
        "video_backend": "pyav",
    }
    sampling = RewardSpec(eval_dim=["VQ"], output_dim=1, sampling=old).frame_sampling()
    assert (
        sampling.min_pixels == 100352
        and sampling.frame_rounding == "floor"
        and sampling.short_video == "error"
    )
