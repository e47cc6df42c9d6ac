"""``python -m ravine``: the ``ravine`` command."""

import sys

from ravine.cli import main

sys.exit(main())
