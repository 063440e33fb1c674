"""`python -m emsim`: the same as the `emsim` command."""

import sys

from .cli import main

sys.exit(main())
