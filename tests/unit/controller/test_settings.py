"""The controller's settings, read from os-ken's configuration."""

from __future__ import annotations

import socket
from pathlib import Path

from oslo_config import cfg

from routeflow.controller.settings import ControllerSettings, register_options


def test_settings_from_the_routeflow_options():
    conf = cfg.ConfigOpts()
    register_options(conf)
    conf(args=["--routeflow-server", "tcp:10.0.0.1:6633", "--routeflow-key-dir", "/tmp/keys",
               "--routeflow-datapaths", "1,a,0000000000000010"], project="test")
    assert ControllerSettings.from_conf(conf.routeflow) == ControllerSettings(
        "tcp:10.0.0.1:6633", socket.gethostname(), Path("/tmp/keys"), frozenset({1, 10, 16}))
    conf(args=["--routeflow-name", "rfc"], project="test")
    settings = ControllerSettings.from_conf(conf.routeflow)
    assert settings.name == "rfc" and settings.datapaths == frozenset()
