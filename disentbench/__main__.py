"""`python -m disentbench ...`: the same command line as `run_bench.py` and `disentbench`."""
import sys

from disentbench.bench.cli import main

sys.exit(main())
