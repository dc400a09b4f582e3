"""Score videos with a running reward server (``python -m vlmrm.serve``), the three ways to send them.

    python -m vlmrm.serve --checkpoint outputs/quickstart --port 8000 &
    python examples/serve_client.py http://127.0.0.1:8000 \
        --video data/quickstart/synthetic/videos/test_0000_A.mp4 \
        --video data/quickstart/synthetic/videos/test_0000_B.mp4 --prompt "a red ball"

Sends the videos as paths the server reads, then as uploaded mp4 bytes (for a server on another
machine), then (when the server scores frame arrays) as decoded frames, the shape a video
generator holds; prints each way's rewards and P(A), P(B), P(tie) of the first two videos.
"""

from __future__ import annotations

import argparse
import json

import av
import numpy as np

from vlmrm.serve import Client


def decoded(path: str) -> tuple[np.ndarray, float]:
    """All frames of a video as uint8 [T, H, W, C] and its fps (what a generator would hand over)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)]), float(
            stream.average_rate
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--video", action="append", required=True, help="video file (repeatable)")
    parser.add_argument("--prompt", required=True, help="the prompt every video is judged against")
    args = parser.parse_args()
    prompts = [args.prompt] * len(args.video)
    with Client(args.url, timeout=120, retries=3) as client:
        info = client.info()
        print("dimensions:", info["dimensions"], "normalised:", info["normalization"] is not None)
        ways = {
            "server-side paths": {"videos": args.video},
            "uploaded mp4 bytes": {"videos": args.video, "upload": True},
        }
        if info["accepts_arrays"]:
            frames = [decoded(path) for path in args.video]
            ways["uploaded frames"] = {"videos": [f for f, _ in frames], "fps": [fps for _, fps in frames]}
        for way, kwargs in ways.items():
            for path, score in zip(args.video, client.score(prompts, **kwargs)):
                print(f"{way:>18} {path}: Overall {score['Overall']:+.4f}  raw {json.dumps(score['raw'])}")
        if len(args.video) >= 2:
            print("compare:", json.dumps(client.compare(args.video[0], args.video[1], args.prompt), indent=1))


if __name__ == "__main__":
    main()
