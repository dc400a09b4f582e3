"""Serve a reward checkpoint over HTTP.

python -m vlmrm.serve --checkpoint outputs/quickstart --host 127.0.0.1 --port 8000 [--max_batch 8
    --max_wait_ms 10 --max_request_mb 100 --max_items 64 --media_root DIR --device cuda]

One process holds one model; uvicorn serves it with one worker (more workers would each load the
model). SIGTERM / Ctrl-C stop accepting connections, let in-flight requests finish (at most
``--shutdown_timeout_s``), score what is queued, and exit.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvicorn

from vlmrm.reward.inference import RewardScorer
from vlmrm.serve.app import ServeSettings, create_app

DEFAULTS = ServeSettings()
DEFAULT_PORT = 8000
DEFAULT_SHUTDOWN_TIMEOUT_S = 30


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vlmrm.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="reward checkpoint directory")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--base_model_path", help="backbone of an adapter checkpoint (default: recorded one)")
    parser.add_argument(
        "--max_batch", type=int, default=DEFAULTS.max_batch, help="items per scorer call (1: no batching)"
    )
    parser.add_argument(
        "--max_wait_ms",
        type=float,
        default=DEFAULTS.max_wait_ms,
        help="how long the first request of a batch waits for others",
    )
    parser.add_argument(
        "--max_request_mb", type=float, default=DEFAULTS.max_request_mb, help="largest request body (MiB)"
    )
    parser.add_argument("--max_items", type=int, default=DEFAULTS.max_items, help="most items per request")
    parser.add_argument(
        "--media_root", type=Path, help="server-side paths must lie under this folder (default: any path)"
    )
    parser.add_argument(
        "--shutdown_timeout_s",
        type=float,
        default=DEFAULT_SHUTDOWN_TIMEOUT_S,
        help="on SIGTERM, how long in-flight requests may take to finish",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServeSettings(
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_request_mb=args.max_request_mb,
        max_items=args.max_items,
        media_root=args.media_root,
    )
    scorer = RewardScorer.from_pretrained(args.checkpoint, args.device, args.base_model_path)
    app = create_app(scorer, settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        timeout_graceful_shutdown=args.shutdown_timeout_s,
        log_level="info",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
