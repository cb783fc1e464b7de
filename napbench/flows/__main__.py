"""``python -m napbench.flows FLOW [--params params.yaml]``: same as ``napbench flow FLOW``."""

import sys

from napbench.cli import main

sys.exit(main(["flow", *sys.argv[1:]]))
