"""`python bench.py --models all --gpu 0`: the same as `segbench bench ...`."""

import sys

from segbench.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
