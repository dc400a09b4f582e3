"""``python -m vlmrm.data.validate``: the data check (:mod:`vlmrm.cli.validate`)."""

import sys

from vlmrm.cli.validate import main

if __name__ == "__main__":
    sys.exit(main())
