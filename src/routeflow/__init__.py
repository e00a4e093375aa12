"""routeflow: RouteFlow virtual routers driving OpenFlow switches."""
