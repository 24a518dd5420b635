"""`python -m reelscan.service` is `reelscan serve`."""

import sys

from reelscan.service.main import main

sys.exit(main(prog="python -m reelscan.service"))
