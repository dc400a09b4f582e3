"""``python -m vlmrm.data.precache``: fill the frame cache (:mod:`vlmrm.reward.precache`)."""

import sys

from vlmrm.reward.precache import main

if __name__ == "__main__":
    sys.exit(main())
