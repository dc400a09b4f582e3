"""Evaluate reward checkpoints: ``python eval_rm.py EVAL_CONFIG.yaml [--key value ...]``.

Or ``./run_eval.sh [EVAL_CONFIG.yaml] [GPU]``. The config's ``task:`` picks the job: reward_model
(default; keys and outputs: ``vlmrm/reward/evaluate.py``), vtg (``vlmrm/vtg/evaluate.py``) or grm
(``vlmrm/grm/evaluate.py``).
"""

import logging
import sys

from vlmrm.cli.tasks import run_eval_task
from vlmrm.core.config import ConfigError
from vlmrm.core.problems import DataValidationError


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(format="[%(asctime)s] %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        lines = run_eval_task(argv[0], argv[1:])
    except (ConfigError, DataValidationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
