"""What ``run_distributed.sh`` checks once, in one process, before it starts any rank: the training
config (with the launcher's own overrides) loads, and the master port is free on this node.

CLI::

    python -m vlmrm.cli.check_launch --port P [--node_rank R] -- CONFIG [--key value ...]

Exit status 0: launch; 2: one line on stderr saying why not. Without it a config error is printed
by every rank, and a port already in use ends in a rendezvous traceback per rank.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys

from vlmrm.core.problems import ConfigError

LAUNCH_REFUSED_STATUS = 2
"""Exit status of a refused launch (as ``train_rm.py`` on a config error)."""
MASTER_NODE_RANK = 0
"""Only the master node opens the rendezvous port."""
TRAIN_ARGS = "--"
"""Separates the check's own options from the arguments of train_rm.py."""
ALL_INTERFACES = ""
LOOPBACK = "127.0.0.1"
"""torchrun's rendezvous store listens on every interface of the master node."""


def port_problem(port: int) -> str | None:
    """Why the rendezvous store could not listen on ``port`` here (None: it can).

    A socket listening on the port (any interface) makes the bind fail even with ``SO_REUSEADDR``,
    which is set so that connections of a finished run still in TIME_WAIT do not count.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ALL_INTERFACES, port))
            probe.listen()
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return f"master port {port} is already in use on this node; pick another with --port"
            return f"cannot listen on master port {port}: {err.strerror}"
    return None


def single_process_world() -> dict[str, str]:
    """The environment of rank 0 in a world of one, on a free loopback port: ``TrainingArguments``
    with a ``ddp_backend`` (the launcher's ``gloo`` on CPU) sets up its process group when built,
    and needs to find one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    rank = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
    return {**rank, "MASTER_ADDR": LOOPBACK, "MASTER_PORT": str(port)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vlmrm.cli.check_launch", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, required=True, help="master port torchrun will listen on")
    parser.add_argument("--node_rank", type=int, default=MASTER_NODE_RANK, help="this node's rank")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index(TRAIN_ARGS) if TRAIN_ARGS in argv else len(argv)
    args = _parser().parse_args(argv[:split])
    train_args = argv[split + 1 :]
    if not train_args:
        _parser().error(f"give {TRAIN_ARGS} CONFIG [--key value ...] (the arguments of train_rm.py)")
    problem = port_problem(args.port) if args.node_rank == MASTER_NODE_RANK else None
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return LAUNCH_REFUSED_STATUS
    os.environ.update(single_process_world())
    from vlmrm.cli.tasks import check_train_config  # after the port: transformers takes seconds to import

    try:
        check_train_config(train_args[0], train_args[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return LAUNCH_REFUSED_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(main())
