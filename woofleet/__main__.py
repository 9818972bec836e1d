"""``python -m woofleet``: the same as the ``woofleet`` command."""

import sys

from woofleet.main import main

sys.exit(main())
