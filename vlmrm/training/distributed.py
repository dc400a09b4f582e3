"""Process-group set-up and tear-down around a run (torchrun, DeepSpeed, gloo on CPU), and the
logging of its processes: rank 0 speaks, the other ranks only warn (prefixed with their rank)."""

from __future__ import annotations

import logging
import os
import sys

import torch

LOG_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"
RANK_ENV = "RANK"
"""The global rank torchrun and the DeepSpeed launcher give each process (absent: one process, rank 0)."""


def process_rank() -> int:
    """This process's global rank, known before the process group exists (from the launcher)."""
    return int(os.environ.get(RANK_ENV, "0"))


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record comes, not as it was when the handler was
    made, so a stderr redirected later (a caller's capture, a test) still gets the log."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        """``StreamHandler.__init__`` assigns the stream; the property always reads the current one."""


def setup_logging(rank: int | None = None) -> None:
    """One log for all ranks: rank 0 prints info and above; every other rank only warnings and errors,
    each line prefixed ``[rank N]``, so N processes print the summaries once, not N times.

    The filter is the handler's level, so it also applies to what transformers logs (its own handler
    is replaced by propagation to this one) and to Python warnings (captured into logging). The
    root logger is set to INFO; handlers installed by others (a caller's, pytest's) are left alone."""
    rank = process_rank() if rank is None else rank
    handler = CurrentStderrHandler()
    handler.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    handler.setFormatter(logging.Formatter(("" if rank == 0 else f"[rank {rank}] ") + LOG_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, CurrentStderrHandler)]:
        root.removeHandler(old)  # a second call replaces the first; other handlers stay
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()


def init_deepspeed_comm(args) -> None:
    """Make DeepSpeed's communication layer see the process group before the model is built.

    Under ZeRO-3 ``from_pretrained`` builds the model inside ``deepspeed.zero.Init``, whose config
    check reads the world size from ``deepspeed.comm``. On GPUs Accelerate initialises it; on CPU
    (``use_cpu``, gloo) only ``torch.distributed`` is set up, DeepSpeed then sees world size 1 and
    rejects the "auto"-filled ``train_batch_size`` (micro x accumulation x real world size).
    ``init_distributed`` wraps the existing process group, so calling it again is harmless.
    """
    if args.deepspeed and args.world_size > 1:
        import deepspeed

        deepspeed.init_distributed(dist_backend=args.ddp_backend)


def finish_distributed() -> None:
    """Leave the process group together and cleanly. Exiting with a live group lets interpreter
    shutdown destroy gloo/DeepSpeed threads that are still joinable, which aborts a rank now and then
    ("terminate called without an active exception", exit -6) after a run that finished."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
