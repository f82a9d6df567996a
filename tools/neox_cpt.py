#!/usr/bin/env python
"""Script form of the ``neox-cpt`` command, for checkouts without the console entry point."""
import sys

from neox_cpt.cli import main

if __name__ == "__main__":
    sys.exit(main())
