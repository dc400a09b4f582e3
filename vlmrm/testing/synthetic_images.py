"""Synthetic image-preference pairs in the three JSONL schemas, with a rule a tiny model can learn.

Each image is one coloured square or circle on grey (the palette and shapes of
:mod:`vlmrm.testing.synthetic`). The rule: **a response (or an image) that names the colour actually drawn
is better**. Wrong answers name another palette colour with the same shape, so the colour is the only
thing that decides. Per split, pairs cycle through the schemas:

- ``ranking``: ``{"id", "query", "image", "response": [r1, r2], "human_ranking"}``; ties (both
  responses right, worded differently) with probability ``tie_fraction``;
- ``chosen_rejected``: ``{"prompt", "chosen", "rejected", "images": [path]}``;
- ``image_preference``: ``{"prompt": "a red square", "image_A", "image_B", "label"}``; ``same`` when
  both images show the named colour.

``wording_only`` (response schemas): both answers name what is drawn and "the ..." beats "a ...",
so only irrelevant-query augmentation can tie the reward to the image.

Usage: ``python -m vlmrm.testing.synthetic_images --out DIR [--num_train 2000 --num_test 200 --seed 0]``
writes ``DIR/images/*.png``, ``DIR/train.jsonl``, ``DIR/test.jsonl``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vlmrm.core.progress import progress
from vlmrm.testing.synthetic import BACKGROUND_RGB, PALETTE, SHAPES

IMAGE_SIZE = 56  # 2 x 2 merged tokens of 28 px at the tiny models' patch 14 x merge 2
IMAGE_OBJECT_FRACTION = 0.5  # object side / image side: about one merged token, as for the video rule
SCHEMA_CYCLE = ("ranking", "chosen_rejected", "image_preference")
RESPONSE_SCHEMAS = SCHEMA_CYCLE[:2]  # the schemas that judge responses (image_preference judges images)
QUERY = "What is shown?"
ANSWER_FORMS = ("a {colour} {shape}", "the {colour} {shape}")


@dataclass(frozen=True)
class SyntheticImageConfig:
    out_dir: Path
    num_train: int = 2000
    num_test: int = 200
    tie_fraction: float = 0.1
    seed: int = 0
    schemas: tuple[str, ...] = SCHEMA_CYCLE
    shapes: tuple[str, ...] = SHAPES
    wording_only: bool = False
    """Both answers name the drawn colour; the better one says "the ...", the worse "a ...". The
    preference then needs no look at the image: a model trained on it alone scores any image alike,
    the failure irrelevant-query augmentation exists for. Response schemas only."""

    def __post_init__(self):
        if self.wording_only and not set(self.schemas) <= set(RESPONSE_SCHEMAS):
            raise ValueError(
                f"wording_only needs schemas among {RESPONSE_SCHEMAS}: image_preference pairs compare "
                f"images, so wording cannot decide them (got {self.schemas})"
            )


def draw_image(colour: str, shape: str, rng: np.random.Generator) -> Image.Image:
    side = round(IMAGE_OBJECT_FRACTION * IMAGE_SIZE)
    x, y = rng.integers(0, IMAGE_SIZE - side + 1, size=2)
    pixels = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    pixels[:] = BACKGROUND_RGB
    yy, xx = np.mgrid[:side, :side] + 0.5
    stamp = (
        np.ones((side, side), bool)
        if shape == "square"
        else (yy - side / 2) ** 2 + (xx - side / 2) ** 2 <= (side / 2) ** 2
    )
    pixels[y : y + side, x : x + side][stamp] = PALETTE[colour]
    return Image.fromarray(pixels)


def _record(split: str, index: int, images: Path, rng: np.random.Generator, config) -> dict:
    tie_fraction = config.tie_fraction
    schema = config.schemas[index % len(config.schemas)]
    colour = str(rng.choice(list(PALETTE)))
    other = str(rng.choice([c for c in PALETTE if c != colour]))
    shape = str(rng.choice(config.shapes))
    if config.wording_only:
        right, wrong = (
            form.format(colour=colour, shape=shape) for form in (ANSWER_FORMS[1], ANSWER_FORMS[0])
        )
    else:
        right, wrong = (ANSWER_FORMS[0].format(colour=c, shape=shape) for c in (colour, other))

    def save(name: str, drawn: str) -> str:
        draw_image(drawn, shape, rng).save(images / f"{split}_{index:05d}_{name}.png")
        return f"images/{split}_{index:05d}_{name}.png"

    tie = bool(rng.random() < tie_fraction)
    if schema == "ranking":
        image = save("x", colour)
        if tie:
            return {
                "id": f"{split}-{index}",
                "query": QUERY,
                "image": image,
                "response": [right, ANSWER_FORMS[1].format(colour=colour, shape=shape)],
                "human_ranking": [0, 0],
            }
        first_right = bool(rng.random() < 0.5)
        responses, ranking = ([right, wrong], [0, 1]) if first_right else ([wrong, right], [1, 0])
        return {
            "id": f"{split}-{index}",
            "query": QUERY,
            "image": image,
            "response": responses,
            "human_ranking": ranking,
        }
    if schema == "chosen_rejected":
        return {"prompt": QUERY, "chosen": right, "rejected": wrong, "images": [save("x", colour)]}
    if tie:
        return {"prompt": right, "image_A": save("A", colour), "image_B": save("B", colour), "label": "same"}
    a_right = bool(rng.random() < 0.5)
    return {
        "prompt": right,
        "image_A": save("A", colour if a_right else other),
        "image_B": save("B", other if a_right else colour),
        "label": "A" if a_right else "B",
    }


def generate_image_pairs(config: SyntheticImageConfig) -> Path:
    out = Path(config.out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for split, count in (("train", config.num_train), ("test", config.num_test)):
        rng = np.random.default_rng([config.seed, ("train", "test").index(split)])
        with (out / f"{split}.jsonl").open("w") as handle:
            for index in progress(range(count), f"generate {split} image pairs", unit="pairs"):
                handle.write(json.dumps(_record(split, index, out / "images", rng, config)) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vlmrm.testing.synthetic_images", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--num_train", type=int, default=2000)
    parser.add_argument("--num_test", type=int, default=200)
    parser.add_argument("--tie_fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--schemas",
        nargs="+",
        choices=SCHEMA_CYCLE,
        help="default: all; response schemas with --wording_only",
    )
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    parser.add_argument(
        "--wording_only", action="store_true", help="preference by wording ('the' > 'a'), not by image"
    )
    args = parser.parse_args(argv)
    config = SyntheticImageConfig(
        out_dir=args.out,
        num_train=args.num_train,
        num_test=args.num_test,
        tie_fraction=args.tie_fraction,
        seed=args.seed,
        schemas=tuple(args.schemas or (RESPONSE_SCHEMAS if args.wording_only else SCHEMA_CYCLE)),
        shapes=tuple(args.shapes),
        wording_only=args.wording_only,
    )
    out = generate_image_pairs(config)
    print(f"wrote {args.num_train} + {args.num_test} image pairs to {out}")


if __name__ == "__main__":
    main()
