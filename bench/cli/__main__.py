"""``python -m metagrad``: the ``metagrad`` command (what torchrun launches with ``-m``)."""
import sys

from metagrad.bench.cli import main

sys.exit(main())
