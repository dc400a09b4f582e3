"""Process-group set-up and tear-down around a run (torchrun, DeepSpeed, gloo on CPU)."""

from __future__ import annotations

import torch


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
