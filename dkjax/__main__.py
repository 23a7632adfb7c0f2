"""``python -m dkjax`` runs the ``dkjax`` command line (the same as the console script)."""

import sys

from ._cli._main import main

sys.exit(main())
