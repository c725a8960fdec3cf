"""`python -m tests.tiny_bench ARGS`: run_bench.py with the in-memory `tiny` dataset registered
(for tests that run the grid in a subprocess)."""
import sys

from disentbench.bench import data
from disentbench.bench.cli import main
from tests.helpers import load_tiny

if __name__ == "__main__":
    data.register("tiny")(load_tiny)
    sys.exit(main(sys.argv[1:]))
