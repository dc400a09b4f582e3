"""Train: ``python train_rm.py CONFIG.yaml [--key value ...]``; the config's ``task:`` picks the job
(reward_model by default, vtg_sft, vtg_grpo, grm_sft: vlmrm.cli.tasks).

Launch on several GPUs (or CPU processes) with ``./run_distributed.sh --gpus N --config CONFIG.yaml``.
``--help`` lists every config key; ``CONFIG [--key value ...] --print_config`` prints the resolved
config and exits without loading anything.
"""

import sys

from vlmrm.cli.help import answer_without_running
from vlmrm.cli.tasks import run_train_task
from vlmrm.core.config import ConfigError
from vlmrm.core.problems import DataValidationError
from vlmrm.training.distributed import finish_distributed, process_rank, setup_logging


def main(argv: list[str]) -> int:
    answered = answer_without_running(argv, __doc__, evaluation=False)
    if answered is not None:
        return answered
    setup_logging()
    try:
        metrics = run_train_task(argv[0], argv[1:])
    except (ConfigError, DataValidationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finish_distributed()  # only after success: a barrier after one rank failed would hang the others
    if metrics and process_rank() == 0:  # the other ranks' copies would repeat it
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
