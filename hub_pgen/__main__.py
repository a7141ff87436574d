import sys

from hub_pgen.cli import main

sys.exit(main())
