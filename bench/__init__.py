"""disentbench core: datasets, networks, training harness, evaluation, run storage."""
__version__ = "0.1.0"
