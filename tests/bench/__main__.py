"""`python -m tests.bench`: see tests/bench/bench.py."""

import sys

from tests.bench.bench import main

main(sys.argv[1:])
