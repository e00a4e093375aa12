"""``python -m routeflow.client --vm NAME --server ADDR``: run the RF-Client."""

import sys

from routeflow.client.agent import main

sys.exit(main())
