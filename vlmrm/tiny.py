"""``python -m vlmrm.tiny``: build a tiny random-weight Qwen-VL checkpoint (:mod:`vlmrm.testing.tiny`)."""

import sys

from vlmrm.testing.tiny import main

if __name__ == "__main__":
    sys.exit(main())
