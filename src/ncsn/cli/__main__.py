"""``python -m ncsn.cli``: the ``ncsn`` command."""

import sys

from ncsn.cli import main

if __name__ == "__main__":
    sys.exit(main())
