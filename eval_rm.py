"""Evaluate reward checkpoints: ``python eval_rm.py EVAL_CONFIG.yaml [--key value ...]``.

Or ``./run_eval.sh [EVAL_CONFIG.yaml] [GPU]``. Keys and outputs: ``vlmrm/evaluate.py``.
"""

import logging
import sys

from vlmrm.config import ConfigError
from vlmrm.evaluate import parse_eval_config, run_evaluation


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(format="[%(asctime)s] %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        config = parse_eval_config(argv[0], argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = run_evaluation(config)
    for row in rows:
        if row.get("error"):
            print(f"{row['model_dir']} {row['checkpoint']}: {row['error']}")
        else:
            print(
                f"{row['model_dir']} {row['checkpoint']} {row['dimension']}: accuracy {row['accuracy']:.4f}"
            )
    print(f"results: {config.output_dir}/{config.output_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
