"""Evaluate reward checkpoints: ``python eval_rm.py EVAL_CONFIG.yaml [--key value ...]``.

Or ``./run_eval.sh [EVAL_CONFIG.yaml] [GPU]``. The config's ``task:`` picks the job: reward_model
(default; keys and outputs: ``vlmrm/reward/evaluate.py``), vtg (``vlmrm/vtg/evaluate.py``) or grm
(``vlmrm/grm/evaluate.py``). ``--help`` lists every config key; ``CONFIG [--key value ...]
--print_config`` prints the resolved config and exits without loading anything.

Exit status: 0 when every checkpoint was evaluated; 1 when a model dir or checkpoint failed (with
``keep_going: true`` after evaluating the rest; each failure is one ``error:`` line); 2 for a config
or data error found before anything loaded.
"""

import sys

from vlmrm.cli.help import answer_without_running
from vlmrm.cli.tasks import run_eval_task
from vlmrm.core.config import ConfigError
from vlmrm.core.problems import DataValidationError, EvaluationFailed
from vlmrm.training.distributed import setup_logging

EVALUATION_FAILED = 1
"""Exit status when a model dir or checkpoint could not be evaluated (2 is a config error)."""


def main(argv: list[str]) -> int:
    answered = answer_without_running(argv, __doc__, evaluation=True)
    if answered is not None:
        return answered
    setup_logging()
    try:
        lines = run_eval_task(argv[0], argv[1:])
    except (ConfigError, DataValidationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except EvaluationFailed as failed:
        print("\n".join(failed.lines))
        for failure in failed.failures:
            print(f"error: {failure}", file=sys.stderr)
        return EVALUATION_FAILED
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
