"""``python -m mcplens.cli``: the same as the ``mcplens`` command."""

import sys

from mcplens.cli import main

sys.exit(main())
