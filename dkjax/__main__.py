"""``python -m dkjax`` runs the ``dkjax`` command line (the same as the console script)."""

import sys

from ._cli import main

sys.exit(main())
