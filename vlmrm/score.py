"""``python -m vlmrm.score``: score videos or images with a reward checkpoint (:mod:`vlmrm.reward.score`)."""

import sys

from vlmrm.reward.score import main

if __name__ == "__main__":
    sys.exit(main())
