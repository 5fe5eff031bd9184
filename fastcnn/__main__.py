"""``python -m fastcnn``: the same as the ``fastcnn`` command."""

import sys

from fastcnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
