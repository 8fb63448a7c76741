"""``python -m gradcheck check|plot MODULE:NAME``: see :mod:`gradcheck._cli`."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
