"""``python -m hub_pgen.cli``: the same command as ``python -m hub_pgen``."""

import sys

from hub_pgen.cli import main

sys.exit(main())
