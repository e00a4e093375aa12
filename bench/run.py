#!/usr/bin/env python3
"""``make bench``: routeflow's benchmarks, one table (:mod:`routeflow_bench`; the same as
``python -m routeflow_bench``, with the same options)."""

import sys

from routeflow_bench.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
