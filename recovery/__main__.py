"""``python -m recovery init|inspect|gc|verify DIR`` (see :mod:`recovery.cli`)."""

import sys

from recovery.cli import main

if __name__ == "__main__":
    sys.exit(main())
