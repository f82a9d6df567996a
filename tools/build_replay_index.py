#!/usr/bin/env python
"""Prebuild a stage's replay index on a CPU node (same as ``neox-cpt build-index``).

    $ python tools/build_replay_index.py configs/cpt_stage.yml --cache-dir /shared/neox_cpt_index
"""
import os
import sys

# tools/neox_cpt.py would shadow the package: import from the checkout root instead of this directory.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _here] + [os.path.dirname(_here)]

from neox_cpt.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["build-index", *sys.argv[1:]]))
