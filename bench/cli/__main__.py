"""``python -m bench.cli``: the ``metagrad`` command (what torchrun launches with ``-m``)."""
import sys

from bench.cli import main

sys.exit(main())
