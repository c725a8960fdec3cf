"""`python -m disentbench.bench.report [results]`"""
from . import main

raise SystemExit(main())
