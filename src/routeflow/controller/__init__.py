"""The RF-Controller: an os-ken application between OpenFlow switches and the RF-Server.

Importing this package starts nothing; :func:`routeflow.controller.main.run`
runs the controller, :mod:`routeflow.controller.openflow` converts flows and
groups to and from OpenFlow 1.3.
"""
