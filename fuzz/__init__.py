"""routeflow's fuzz targets and their runner (``make fuzz``; see fuzz/README.md)."""
