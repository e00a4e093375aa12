import sys

from routeflow.cli import main

sys.exit(main())
