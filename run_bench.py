#!/usr/bin/env python
"""Run the disentbench grid: `python run_bench.py --methods all --seeds 10` (see README.md)."""
import sys

from disentbench.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
