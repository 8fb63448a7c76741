"""``python -m gradcheck check|plot MODULE:NAME``: see :mod:`gradcheck._cli`."""

import sys

from ._cli import main
from ._global_state import exit_zero_fails
from ._threads import LeftThreads

if __name__ == "__main__":
    left = LeftThreads()
    with left.watching("the target of 'python -m gradcheck " + " ".join(sys.argv[1:]) + "'"), \
            exit_zero_fails():  # a target's os._exit(0), also at import, is not a pass
        status = main()
    left.end_process(status)  # a thread the target left running would hang the exit
    sys.exit(status)
