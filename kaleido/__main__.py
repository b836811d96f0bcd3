"""`python -m kaleido`: the `kaleido` command line (kaleido.cli)."""

import sys

from kaleido.cli import main

if __name__ == "__main__":
    sys.exit(main())
