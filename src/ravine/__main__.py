"""``python -m ravine``: the ``ravine`` command."""

import sys

from ravine.cli import main

if __name__ == "__main__":  # also imported by the workers `ravine compare --jobs` spawns
    sys.exit(main())
