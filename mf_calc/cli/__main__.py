"""``python -m mf_calc.cli`` (e.g. under torchrun): the ``mf-calc`` command."""

import sys

from mf_calc.cli import main

sys.exit(main())
