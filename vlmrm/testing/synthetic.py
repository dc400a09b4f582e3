"""Synthetic video-preference pairs whose labels follow simple visual rules.

Why: end-to-end tests and tiny-model experiments need a data set in the CSV video-pair format (:mod:`vlmrm.pairs.video_pairs`)
(`path_A,path_B,prompt,VQ,MQ,TA,fps_A,num_frames_A,fps_B,num_frames_B`) with real mp4 files and
labels a model can actually learn. Each clip is a coloured square or circle on a grey background;
three independent per-clip properties decide the three labels:

- VQ: a clean clip beats a clip with heavy per-pixel luminance noise.
- MQ: constant-velocity motion beats motion that teleports around the same path every frame.
- TA: a clip showing the colour named in the prompt beats one showing another palette colour.

The `measure_*` functions recover each property from decoded frames, so tests (and anyone
debugging a model) can check that a rule survived video compression.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np

from vlmrm.core.progress import progress
from vlmrm.media.video import BACKENDS, probe_video

DIMENSIONS = ("VQ", "MQ", "TA")
LABELS = ("A", "B", "same")
CSV_HEADER = ("path_A", "path_B", "prompt", *DIMENSIONS, "fps_A", "num_frames_A", "fps_B", "num_frames_B")

BACKGROUND_RGB = (128, 128, 128)  # mid-grey: noise is not clipped on the background, every colour stands out
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
}
SHAPES = ("square", "circle")
DIRECTIONS = {"to the right": (1, 0), "to the left": (-1, 0), "down": (0, 1), "up": (0, -1)}

# Object side / frame side: 25 px after resizing to 56, about one merged 28 px LLM token, so a token
# that holds the object is mostly its colour. At 0.3 (17 px) the tiny model learned TA late or not
# at all for some seeds (measured: TA at chance after 4.5 epochs of 3000 pairs, seed 1).
OBJECT_FRACTION = 0.45
NOISE_SIGMA = 32.0  # std of the luminance noise of a "noisy" clip, in 0..255 grey levels
JITTER_FRACTION = 0.25  # teleporting offset per axis is uniform in +-(this * frame side)
# E|n - box3(n)| for i.i.d. N(0, 1) noise: the residual has std sqrt(8/9), and E|N(0, s)| = s * sqrt(2/pi).
NOISE_RESIDUAL_PER_SIGMA = math.sqrt(8 / 9) * math.sqrt(2 / math.pi)
NOISY_THRESHOLD = 0.5 * NOISE_RESIDUAL_PER_SIGMA * NOISE_SIGMA  # a decoded clip above this counts as noisy
OBJECT_MASK_DISTANCE = 60.0  # RGB distance from background; half the nearest palette colour's (green, 123)
CENTROID_BLUR = 5  # box-blur width before masking: noise std drops 5x; symmetric, so centres stay put
JITTERY_THRESHOLD = 4.0  # px of mean acceleration; smooth clips stay under ~1.5 px (integer rounding)

# Fixed MPEG-4 Part 2 quantiser (1 = best, 31 = worst), pinned via qmin = qmax: `-q:v` (flags +qscale)
# would need a per-frame `quality` that PyAV frames do not carry. At 2 the decoded frames differ from
# the render by ~1.5 grey levels and keep ~97% of the noise residual.
MPEG4_QSCALE = 2
X264_CRF = 10  # near-lossless H.264 rate factor (0 = lossless, 23 = default)
CODEC_SETTINGS: dict[str, tuple[str, dict[str, str]]] = {
    "mpeg4": ("mpeg4", {"qmin": str(MPEG4_QSCALE), "qmax": str(MPEG4_QSCALE)}),
    "h264": ("libx264", {"crf": str(X264_CRF), "preset": "veryfast"}),
}


def check_clip_settings(config) -> None:
    """Shared checks of the synthetic generators' configs (frozen dataclasses with ``out_dir``,
    ``num_train``, ``num_test``, ``size``, ``fps``); makes ``out_dir`` a Path."""
    object.__setattr__(config, "out_dir", Path(config.out_dir))
    if config.num_train < 0 or config.num_test < 0:
        raise ValueError("num_train and num_test must be >= 0")
    if config.size < 32 or config.size % 2:
        raise ValueError(f"size must be even (yuv420p) and >= 32, got {config.size}")
    if config.fps <= 0:
        raise ValueError(f"fps must be positive, got {config.fps}")


@dataclass(frozen=True)
class SyntheticVideoConfig:
    """What to generate; every field is also a CLI flag of `python -m vlmrm.testing.synthetic`."""

    out_dir: Path
    num_train: int = 200
    num_test: int = 100
    size: int = 64
    fps: int = 8
    duration: float = 2.0
    tie_fraction: float = 0.15
    seed: int = 0
    codec: Literal["mpeg4", "h264"] = "mpeg4"
    prompt_style: Literal["colour", "full"] = "colour"

    def __post_init__(self) -> None:
        check_clip_settings(self)
        if self.num_frames < 3:
            raise ValueError("fps * duration must give at least 3 frames (jitter needs 3 positions)")
        if not 0.0 <= self.tie_fraction <= 1.0:
            raise ValueError(f"tie_fraction must be in [0, 1], got {self.tie_fraction}")
        if self.codec not in CODEC_SETTINGS:
            raise ValueError(f"codec must be one of {sorted(CODEC_SETTINGS)}, got {self.codec!r}")

    @property
    def num_frames(self) -> int:
        return round(self.fps * self.duration)


@dataclass(frozen=True)
class ClipSpec:
    """The three label-deciding properties of one clip."""

    colour: str
    noisy: bool
    jittery: bool


@dataclass(frozen=True)
class PairPlan:
    """Everything about one pair except the pixels; both clips share prompt, shape and path."""

    split: str
    index: int
    prompt: str
    shape: str
    direction: str
    lane: float  # position across the motion axis, as a fraction of the free range
    labels: dict[str, str]
    clip_a: ClipSpec
    clip_b: ClipSpec

    def path(self, side: Literal["A", "B"]) -> str:
        return f"videos/{self.split}_{self.index:04d}_{side}.mp4"


@dataclass(frozen=True)
class SyntheticSummary:
    """What `generate_video_pairs` wrote and how long it took."""

    out_dir: Path
    train_csv: Path
    test_csv: Path
    rules_json: Path
    num_videos: int
    seconds: float
    label_counts: dict[str, dict[str, dict[str, int]]]


def draw_labels(rng: np.random.Generator, tie_fraction: float) -> dict[str, str]:
    """One pair's labels, each dimension drawn independently: P(same) = tie_fraction, P(A) = P(B)."""
    p_win = (1.0 - tie_fraction) / 2
    return {dim: str(rng.choice(LABELS, p=[p_win, p_win, tie_fraction])) for dim in DIMENSIONS}


def _binary_property(label: str, rng: np.random.Generator) -> tuple[bool, bool]:
    """(A has the bad property, B has it): the preferred clip is the one without it; a tie shares it."""
    if label == "A":
        return False, True
    if label == "B":
        return True, False
    bad = bool(rng.random() < 0.5)
    return bad, bad


PROMPT_STYLES = {
    "colour": "{colour}",
    "full": "a {colour} {shape} moving {direction}",
}
"""Prompt text per style. ``colour`` (default) names only the colour: a sub-million-parameter model
learns the colour-word <-> pixels binding from it in a few hundred steps, while with the full
sentence it memorises each clip's shape/direction context instead (measured: chance-level held-out
TA after 3 epochs of 3000 pairs). ``full`` is the descriptive sentence for larger models."""


def named_colour(prompt: str) -> str:
    """The palette colour a prompt names (every style names exactly one)."""
    return next(word for word in prompt.split() if word in PALETTE)


def plan_pair(
    split: str, index: int, rng: np.random.Generator, tie_fraction: float, prompt_style: str = "colour"
) -> PairPlan:
    """Draw labels, then the clip properties they imply, plus the shared scene; no pixels."""
    labels = draw_labels(rng, tie_fraction)
    noisy_a, noisy_b = _binary_property(labels["VQ"], rng)
    jitter_a, jitter_b = _binary_property(labels["MQ"], rng)
    named = str(rng.choice(list(PALETTE)))
    other = str(rng.choice([c for c in PALETTE if c != named]))
    colour_a, colour_b = {"A": (named, other), "B": (other, named), "same": (named, named)}[labels["TA"]]
    shape = str(rng.choice(SHAPES))
    direction = str(rng.choice(list(DIRECTIONS)))
    return PairPlan(
        split=split,
        index=index,
        prompt=PROMPT_STYLES[prompt_style].format(colour=named, shape=shape, direction=direction),
        shape=shape,
        direction=direction,
        lane=float(rng.random()),
        labels=labels,
        clip_a=ClipSpec(colour_a, noisy_a, jitter_a),
        clip_b=ClipSpec(colour_b, noisy_b, jitter_b),
    )


def _split_seed(seed: int, split: str, index: int, *extra: int) -> np.random.Generator:
    """An independent stream per (split, pair[, clip]) so a pair never depends on the split sizes."""
    return np.random.default_rng([seed, ("train", "test").index(split), index, *extra])


def plan_split(config: SyntheticVideoConfig, split: Literal["train", "test"]) -> list[PairPlan]:
    """All pair plans of one split; pure and cheap, so label statistics are testable without video."""
    count = config.num_train if split == "train" else config.num_test
    seeds = (_split_seed(config.seed, split, i) for i in range(count))
    return [plan_pair(split, i, rng, config.tie_fraction, config.prompt_style) for i, rng in enumerate(seeds)]


def _trajectory(
    plan: PairPlan, spec: ClipSpec, config: SyntheticVideoConfig, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """((T, 2) integer top-left corners (x, y), object side): linear path, plus teleporting offsets."""
    side = round(OBJECT_FRACTION * config.size)
    free = config.size - side
    progress = np.linspace(0.0, 1.0, config.num_frames)  # (T,)
    dx, dy = DIRECTIONS[plan.direction]
    along = np.where(np.array([dx, dy]) < 0, 1.0 - progress[:, None], progress[:, None])  # (T, 2)
    moving = np.array([dx != 0, dy != 0])
    xy = np.where(moving, along, plan.lane) * free  # (T, 2)
    if spec.jittery:
        amplitude = JITTER_FRACTION * config.size
        xy = xy + rng.uniform(-amplitude, amplitude, size=xy.shape)
    return np.clip(np.rint(xy), 0, free).astype(int), side


def shape_stamp(shape: str, side: int) -> np.ndarray:
    """(side, side) bool mask of a `SHAPES` shape: the full square, or the inscribed disc (pixel centres)."""
    if shape == "square":
        return np.ones((side, side), bool)
    if shape == "circle":
        yy, xx = np.mgrid[:side, :side] + 0.5
        radius = side / 2
        return (yy - radius) ** 2 + (xx - radius) ** 2 <= radius**2
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def render_clip(
    plan: PairPlan, spec: ClipSpec, config: SyntheticVideoConfig, rng: np.random.Generator
) -> np.ndarray:
    """RGB frames (T, H, W, 3) uint8 of one clip; `rng` draws its jitter offsets and noise."""
    corners, side = _trajectory(plan, spec, config, rng)
    stamp = shape_stamp(plan.shape, side)
    frames = np.empty((config.num_frames, config.size, config.size, 3), np.float32)
    frames[:] = BACKGROUND_RGB
    for t, (x, y) in enumerate(corners):
        frames[t, y : y + side, x : x + side][stamp] = PALETTE[spec.colour]
    if spec.noisy:  # one value per pixel for all channels: luminance noise survives 4:2:0 chroma subsampling
        frames += rng.normal(0.0, NOISE_SIGMA, size=frames.shape[:3] + (1,)).astype(np.float32)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def write_mp4(path: Path, frames: np.ndarray, fps: int, codec: Literal["mpeg4", "h264"]) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames as yuv420p mp4 with the near-lossless settings above."""
    codec_name, options = CODEC_SETTINGS[codec]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec_name, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def read_frames(path: Path) -> np.ndarray:
    """Decode every frame of a video to (T, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _box_blur(x: np.ndarray, k: int) -> np.ndarray:
    """Mean over a k x k window (edge padded) on axes 1, 2 of a (T, H, W[, C]) array, via integral images."""
    r, trailing = k // 2, [(0, 0)] * (x.ndim - 3)
    padded = np.pad(x.astype(np.float64), [(0, 0), (r, r), (r, r), *trailing], mode="edge")
    integral = np.pad(padded.cumsum(1).cumsum(2), [(0, 0), (1, 0), (1, 0), *trailing])
    h, w = x.shape[1], x.shape[2]
    total = integral[:, k:, k:] - integral[:, :h, k:] - integral[:, k:, :w] + integral[:, :h, :w]
    return total / (k * k)


def measure_noise(frames: np.ndarray) -> float:
    """Mean high-frequency residual of the grey image: mean over t, y, x of |g - box3(g)|, g = (R+G+B)/3.

    For i.i.d. luminance noise of std s on flat regions the expectation is
    s * sqrt(8/9) * sqrt(2/pi) ~= 0.752 s (`NOISE_RESIDUAL_PER_SIGMA`); a noise-free render scores only
    on the object's edges (well under 1 grey level for these clips).
    """
    grey = frames.astype(np.float64).mean(axis=-1)  # (T, H, W)
    return float(np.abs(grey - _box_blur(grey, 3)).mean())


def _object_mask(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(blurred frames (T, H, W, 3), object mask (T, H, W)): pixels far from the per-frame median colour."""
    blurred = _box_blur(frames, CENTROID_BLUR)
    background = np.median(blurred, axis=(1, 2), keepdims=True)  # object covers < 10%, so median = background
    mask = np.linalg.norm(blurred - background, axis=-1) > OBJECT_MASK_DISTANCE
    if not mask.any(axis=(1, 2)).all():
        raise ValueError("no object found in at least one frame")
    return blurred, mask


def object_centroids(frames: np.ndarray) -> np.ndarray:
    """(T, 2) object centre (x, y) in pixels per frame, from the mask of `_object_mask`."""
    _, mask = _object_mask(frames)
    ys, xs = np.mgrid[: mask.shape[1], : mask.shape[2]]
    count = mask.sum(axis=(1, 2))
    return np.stack([(mask * xs).sum(axis=(1, 2)) / count, (mask * ys).sum(axis=(1, 2)) / count], axis=1)


def measure_jitter(frames: np.ndarray) -> float:
    """Mean acceleration of the object centre c_t, in pixels: mean over t of |c_{t+1} - 2 c_t + c_{t-1}|.

    Zero for constant velocity (up to ~1 px of integer rounding); for offsets uniform in +-a per axis
    each acceleration component has std a * sqrt(2) (variance 6 * a^2 / 3), i.e. about 22 px at a = 16
    before clipping to the frame.
    """
    centres = object_centroids(frames)
    return float(np.linalg.norm(np.diff(centres, n=2, axis=0), axis=1).mean())


def dominant_object_colour(frames: np.ndarray) -> str:
    """Palette name nearest (RGB Euclidean) to the mean blurred colour of the object mask over all frames."""
    blurred, mask = _object_mask(frames)
    mean = blurred[mask].mean(axis=0)
    return min(PALETTE, key=lambda name: float(np.linalg.norm(mean - np.array(PALETTE[name]))))


def _rules(config: SyntheticVideoConfig) -> dict[str, object]:
    """Machine- and human-readable description written next to the data as rules.json."""
    codec_name, options = CODEC_SETTINGS[config.codec]
    return {
        "config": {**asdict(config), "out_dir": str(config.out_dir), "num_frames": config.num_frames},
        "rules": {
            "VQ": f"less noise is better: clean vs luminance Gaussian noise std {NOISE_SIGMA} (0..255)",
            "MQ": "smooth is better: constant velocity vs per-frame offsets uniform in "
            f"+-{JITTER_FRACTION} * size around the same path",
            "TA": "the clip showing the colour named in the prompt is better; same = both show it",
            "same": "both clips share the property; each dimension is drawn independently",
        },
        "palette": PALETTE,
        "background_rgb": BACKGROUND_RGB,
        "object_fraction": OBJECT_FRACTION,
        "encoding": {"codec": codec_name, "options": options, "pix_fmt": "yuv420p"},
        "thresholds": {"noisy": NOISY_THRESHOLD, "jittery": JITTERY_THRESHOLD},
    }


def _write_split(
    config: SyntheticVideoConfig, plans: list[PairPlan], csv_path: Path
) -> list[dict[str, object]]:
    """Render, encode and probe every clip of a split; write its CSV; return per-pair metadata."""
    metadata = []
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for plan in progress(plans, f"generate {csv_path.stem} video pairs", unit="pairs"):
            probed = []
            for clip_index, (side, spec) in enumerate((("A", plan.clip_a), ("B", plan.clip_b))):
                rng = _split_seed(config.seed, plan.split, plan.index, clip_index + 1)
                path = config.out_dir / plan.path(side)
                write_mp4(path, render_clip(plan, spec, config, rng), config.fps, config.codec)
                info = probe_video(path, BACKENDS["pyav"])
                fps, num_frames = info.fps, info.total_frames
                if (fps, num_frames) != (config.fps, config.num_frames):
                    raise RuntimeError(f"{path}: decoder reads {fps} fps, {num_frames} frames")
                probed += [f"{fps:g}", num_frames]
            labels = [plan.labels[dim] for dim in DIMENSIONS]
            writer.writerow([plan.path("A"), plan.path("B"), plan.prompt, *labels, *probed])
            metadata.append(asdict(plan))
    return metadata


def generate_video_pairs(config: SyntheticVideoConfig) -> SyntheticSummary:
    """Write videos/, train.csv, test.csv and rules.json (rules, parameters, per-clip properties)."""
    start = time.perf_counter()
    (config.out_dir / "videos").mkdir(parents=True, exist_ok=True)
    rules = _rules(config)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for split in ("train", "test"):
        plans = plan_split(config, split)
        rules[f"{split}_pairs"] = _write_split(config, plans, config.out_dir / f"{split}.csv")
        counts[split] = {d: {y: sum(p.labels[d] == y for p in plans) for y in LABELS} for d in DIMENSIONS}
    rules_json = config.out_dir / "rules.json"
    rules_json.write_text(json.dumps(rules, indent=2) + "\n")
    return SyntheticSummary(
        out_dir=config.out_dir,
        train_csv=config.out_dir / "train.csv",
        test_csv=config.out_dir / "test.csv",
        rules_json=rules_json,
        num_videos=2 * (config.num_train + config.num_test),
        seconds=time.perf_counter() - start,
        label_counts=counts,
    )


def parse_args(argv: list[str] | None = None) -> SyntheticVideoConfig:
    """CLI flags -> config; defaults come from the dataclass so they are defined once."""
    defaults = SyntheticVideoConfig(out_dir=Path("."))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--num_train", type=int, default=defaults.num_train, help="training pairs")
    parser.add_argument("--num_test", type=int, default=defaults.num_test, help="test pairs")
    parser.add_argument("--size", type=int, default=defaults.size, help="frame width = height, even")
    parser.add_argument("--fps", type=int, default=defaults.fps, help="frames per second")
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds per clip")
    parser.add_argument("--tie_fraction", type=float, default=defaults.tie_fraction, help="P(same) per dim")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument("--codec", choices=sorted(CODEC_SETTINGS), default=defaults.codec, help="video codec")
    parser.add_argument(
        "--prompt_style",
        choices=sorted(PROMPT_STYLES),
        default=defaults.prompt_style,
        help="colour: the colour word alone (learnable by tiny models); full: a sentence",
    )
    args = vars(parser.parse_args(argv))
    return SyntheticVideoConfig(out_dir=args.pop("out"), **args)


def main(argv: list[str] | None = None) -> None:
    summary = generate_video_pairs(parse_args(argv))
    print(f"wrote {summary.num_videos} videos to {summary.out_dir} in {summary.seconds:.1f} s")


if __name__ == "__main__":
    main()
