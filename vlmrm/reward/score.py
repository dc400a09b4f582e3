"""Score videos or images with a reward checkpoint from the command line; prints JSON.

python -m vlmrm.score --checkpoint outputs/quickstart --video a.mp4 --prompt "red"
python -m vlmrm.score --checkpoint DIR --video a.mp4 --video b.mp4 --prompt "red" --compare
python -m vlmrm.score --checkpoint DIR --image x.png --prompt "What is shown?" --response "A cat."
"""

from __future__ import annotations

import argparse
import json
import sys

from vlmrm.core.paths import check_file, check_model_source
from vlmrm.core.problems import ConfigError
from vlmrm.reward.inference import RewardScorer


def check_paths(args: argparse.Namespace) -> None:
    """The checkpoint (folder or Hub id), backbone and every media file exist (:mod:`vlmrm.core.paths`)."""
    check_model_source(args.checkpoint, "--checkpoint")
    check_model_source(args.base_model_path, "--base_model_path")
    for flag, items in (("--video", args.video), ("--image", args.image)):
        for item in items or []:
            check_file(item, flag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmrm.score", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="reward checkpoint directory")
    media = parser.add_mutually_exclusive_group(required=True)
    media.add_argument("--video", action="append", help="video file (repeatable)")
    media.add_argument("--image", action="append", help="image file (repeatable)")
    parser.add_argument("--prompt", action="append", required=True, help="one prompt, or one per item")
    parser.add_argument("--response", action="append", help="text response judged with each image/video")
    parser.add_argument("--compare", action="store_true", help="P(A), P(B), P(tie) of exactly two items")
    parser.add_argument("--base_model_path", help="backbone of an adapter checkpoint (default: recorded one)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    args = parser.parse_args(argv)
    items = args.video or args.image
    prompts = args.prompt * len(items) if len(args.prompt) == 1 else args.prompt
    if len(prompts) != len(items):
        parser.error(f"{len(items)} items but {len(args.prompt)} prompts: give one prompt, or one per item")
    try:  # before the model loads: a typo costs seconds, not a load and a traceback
        check_paths(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    scorer = RewardScorer.from_pretrained(args.checkpoint, args.device, args.base_model_path)
    if args.compare:
        if len(items) != 2:
            parser.error("--compare needs exactly two items")
        result = scorer.compare(items[0], items[1], prompts[0], media="video" if args.video else "image")
    else:
        key = "videos" if args.video else "images"
        scores = scorer.score(prompts, responses=args.response, **{key: items})
        result = [{"item": item, "prompt": prompt, **s} for item, prompt, s in zip(items, prompts, scores)]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
