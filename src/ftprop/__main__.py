"""``python -m ftprop ...``: the same command line as ``ftprop ...``."""

import sys

from .cli import main

sys.exit(main())
