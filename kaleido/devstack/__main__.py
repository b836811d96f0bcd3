"""``python -m kaleido.devstack STATE_DIR``: see :func:`kaleido.devstack.cli.main`."""

import sys

from kaleido.devstack.cli import main

sys.exit(main())
