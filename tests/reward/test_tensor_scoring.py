"""RewardScorer on frames in memory: equal to files, differentiable, batched (tiny untrained checkpoint)."""

import numpy as np
import pytest
import torch
from PIL import Image

from vlmrm.media.video import resolve_backend
from vlmrm.reward.inference import RewardScorer
from vlmrm.testing.synthetic import write_mp4

FPS = 8
EXACT_ATOL = 1e-5
"""float32 rewards of identical inputs in different batches (padding changes summation order)."""
ROUNDING_ATOL = 2e-3
"""Differentiable vs exact path with a resize: the exact path rounds resized pixels to uint8 (<= 0.5/255);
measured |difference| on the tiny model is below 5e-4."""
BF16_ATOL = 0.1
"""bfloat16 keeps 8 significant bits: rewards of order 1 move by a few 1e-2 through the layers."""


def noise_video(num_frames=16, height=64, width=80, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def scorer(reward_checkpoint):
    return RewardScorer.from_pretrained(reward_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def mp4_and_frames(tmp_path_factory):
    """A real mp4 (PyAV) and every one of its frames decoded, (T, H, W, 3) uint8."""
    path = tmp_path_factory.mktemp("videos") / "noise.mp4"
    write_mp4(path, noise_video(), FPS, "mpeg4")
    return path, resolve_backend("pyav").read(str(path), list(range(16)))


def test_decoded_file_and_its_frames_score_equal(scorer, mp4_and_frames):
    path, frames = mp4_and_frames
    channels_first = torch.from_numpy(frames).permute(0, 3, 1, 2)
    videos = [path, frames, channels_first, channels_first.float() / 255]
    rewards = scorer.raw_rewards(["red"] * 4, videos=videos, fps=[None, FPS, FPS, FPS])
    assert (rewards == rewards[0]).all()
    by_time = scorer.raw_rewards(["red"], videos=[frames], timestamps=[np.arange(16) / FPS])
    batch = scorer.raw_rewards(["red", "red"], videos=np.stack([frames, frames]), fps=FPS)
    assert (by_time == rewards[0]).all() and (batch == rewards[0]).all()


def test_pil_tensor_and_array_images_score_equal(scorer, tmp_path):
    pixels = noise_video(1, 60, 70)[0]
    Image.fromarray(pixels).save(tmp_path / "x.png")
    images = [
        tmp_path / "x.png",
        Image.fromarray(pixels),
        pixels,
        torch.from_numpy(pixels).permute(2, 0, 1),
        torch.from_numpy(pixels).permute(2, 0, 1).double() / 255,
    ]
    rewards = scorer.raw_rewards(["red"] * len(images), images=images, batch_size=2)
    assert (np.abs(rewards - rewards[0]) <= EXACT_ATOL).all()


def test_bad_inputs_name_the_item(scorer, mp4_and_frames):
    path, frames = mp4_and_frames
    with pytest.raises(ValueError, match=r"videos\[1\]: frames need their frame rate"):
        scorer.score(["a", "b"], videos=[path, frames])
    with pytest.raises(ValueError, match=r"videos\[0\] is a file .* own frame rate"):
        scorer.score(["a"], videos=[path], fps=FPS)
    with pytest.raises(ValueError, match=r"videos\[0\]: float frames must lie in \[0, 1\]"):
        scorer.score(["a"], videos=[frames.astype(np.float32)], fps=FPS)
    with pytest.raises(ValueError, match="2 videos/images for 1 prompts"):
        scorer.score(["a"], videos=[frames, frames], fps=FPS)
    with pytest.raises(ValueError, match="3 fps values for 2 videos"):
        scorer.score(["a", "b"], videos=[frames, frames], fps=[FPS] * 3)


def test_batched_scoring_equals_one_at_a_time(scorer, mp4_and_frames):
    _, frames = mp4_and_frames
    # three sizes -> three visual-token counts; input order is kept whatever the grouping
    videos = [frames, frames[:, :40, :40], frames[:, :, :70], frames[:, :40, :40]]
    fps = [FPS, FPS, 2 * FPS, FPS]
    prompts = ["red", "a blue square moves", "green", "red"]
    one = np.concatenate(
        [scorer.raw_rewards([p], videos=[v], fps=[f]) for p, v, f in zip(prompts, videos, fps)]
    )
    batched = scorer.raw_rewards(prompts, videos=videos, fps=fps, batch_size=4)
    np.testing.assert_allclose(batched, one, rtol=0, atol=EXACT_ATOL)
    assert scorer._batches([5, 1, 5, 1], [0, 0, 0, 0], 2) == [[1, 3], [0, 2]]


def test_device_and_dtype_are_the_users(reward_checkpoint, mp4_and_frames, scorer):
    _, frames = mp4_and_frames
    half = RewardScorer.from_pretrained(reward_checkpoint, device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and half.device == torch.device("cpu")
    rewards = half.raw_rewards(["red"], videos=[frames], fps=np.float32(FPS))
    np.testing.assert_allclose(rewards, scorer.raw_rewards(["red"], videos=[frames], fps=FPS), atol=BF16_ATOL)
    with pytest.raises(ValueError, match="dtype 'float8'"):
        RewardScorer.from_pretrained(reward_checkpoint, device="cpu", dtype="float8")


def test_differentiable_rewards_match_the_exact_path(scorer, mp4_and_frames):
    _, frames = mp4_and_frames
    video = torch.from_numpy(frames).float().div(255).requires_grad_(True)
    rewards = scorer.score_tensor(["red"], [video], fps=FPS)
    exact = scorer.raw_rewards(["red"], videos=[frames], fps=FPS)
    np.testing.assert_allclose(rewards.detach().numpy(), exact, rtol=0, atol=ROUNDING_ATOL)
    rewards.sum().backward()
    sampled = scorer._decode([frames], [float(FPS)])[0].indices
    unused = sorted(set(range(16)) - set(sampled))
    assert video.grad[sampled].abs().sum() > 0 and video.grad[unused].abs().sum() == 0


def test_differentiable_equals_exact_without_a_resize(scorer):
    frames = noise_video(8, 56, 56, seed=3)  # already the trained 56 x 56: nothing is rounded
    rewards = scorer.score_tensor(["red"], torch.from_numpy(frames[None]).float() / 255, fps=FPS)
    exact = scorer.raw_rewards(["red"], videos=[frames], fps=FPS)
    np.testing.assert_allclose(rewards.detach().numpy(), exact, rtol=0, atol=EXACT_ATOL)


FD_STEP = 3e-3
"""Central-difference step in [0, 1] pixel units (0.77 levels). The checkpoint's RMSNorms and reward
output compute in float32 even in a float64 model, so the objective carries ~1e-7 relative noise:
the step is large enough that noise / step stays far below the derivatives checked."""
FD_RTOL = 5e-3
"""Measured agreement on the tiny model: 1e-4 to 2e-3 relative (directions and the largest pixels)."""


def test_gradient_matches_finite_differences(reward_checkpoint):
    """float64 model and input: the gradient along a random direction and at the pixels of largest
    gradient equals central differences; frames sampling skips get exactly zero gradient."""
    scorer = RewardScorer.from_pretrained(reward_checkpoint, device="cpu", dtype=torch.float64)
    video = torch.from_numpy(noise_video(8, 64, 80, seed=1)).double().div(255).requires_grad_(True)
    weights = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)

    def objective(x):
        return float((scorer.score_tensor(["red"], [x], fps=FPS) * weights).sum())

    (scorer.score_tensor(["red"], [video], fps=FPS) * weights).sum().backward()
    grad = video.grad
    rng = np.random.default_rng(0)
    directions = [torch.from_numpy(rng.standard_normal(video.shape))]
    largest = torch.topk(grad.abs().flatten(), 2).indices
    for i in largest:
        direction = torch.zeros_like(video).flatten()
        direction[i] = 1
        directions.append(direction.view_as(video))
    with torch.no_grad():
        for direction in directions:
            numeric = (objective(video + FD_STEP * direction) - objective(video - FD_STEP * direction)) / (
                2 * FD_STEP
            )
            assert float((grad * direction).sum()) == pytest.approx(numeric, rel=FD_RTOL)
    assert grad[[1, 3, 4, 6]].abs().sum() == 0  # num_frames 4 of 8 samples linspace(0, 7, 4).round()
