"""``python -m vlmrm.convert videoalign --src DIR --out DIR [--base_model PATH] [--videoalign_repo DIR]``:
import another framework's reward checkpoint (:mod:`vlmrm.reward.videoalign_convert`)."""

import sys

from vlmrm.reward import videoalign_convert

CONVERTERS = {"videoalign": videoalign_convert.main}
"""Source framework -> its converter's command-line entry."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in CONVERTERS:
        print(
            f"usage: python -m vlmrm.convert {{{','.join(CONVERTERS)}}} --src DIR --out DIR ...",
            file=sys.stderr,
        )
        return 2
    return CONVERTERS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
