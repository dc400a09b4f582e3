"""Train a vision-language reward model: ``python train_rm.py CONFIG.yaml [--key value ...]``.

Launch on several GPUs (or CPU processes) with ``./run_distributed.sh --gpus N --config CONFIG.yaml``.
"""

import logging
import sys

from vlmrm.config import ConfigError, parse_config
from vlmrm.data.problems import DataValidationError
from vlmrm.train import finish_distributed, run_training


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(format="[%(asctime)s] %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        cfg = parse_config(argv[0], argv[1:])
        metrics = run_training(cfg)
    except (ConfigError, DataValidationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finish_distributed()  # only after success: a barrier after one rank failed would hang the others
    if metrics:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
