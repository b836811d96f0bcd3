"""Start Kaleido: `python run.py [run|doctor|streams|dlq|sync|top] [--flags]` (see README.md)."""

import sys

from kaleido.cli import main

if __name__ == "__main__":
    sys.exit(main())
