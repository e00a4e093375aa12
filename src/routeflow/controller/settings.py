"""What the RF-Controller needs besides os-ken's own options, and the ``--routeflow-*``
options of os-ken's configuration it comes from."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oslo_config import cfg

from routeflow.protocol import auth
from routeflow.protocol.transport import DEFAULT_SERVER

OPTIONS = [
    cfg.StrOpt("server", default=DEFAULT_SERVER, help="RF-Server address (tcp:HOST:PORT or unix:PATH)"),
    cfg.StrOpt("name", default="", help="name to give the RF-Server (default: host name)"),
    # Not "keys": oslo.config groups have a keys() method that would shadow it.
    cfg.StrOpt("key-dir", default=str(auth.KEY_DIR), help="directory of routeflow's keys"),
    cfg.ListOpt("datapaths", default=[], help="datapath ids allowed to connect (default: any)"),
]


def register_options(conf: cfg.ConfigOpts) -> None:
    """Declare ``--routeflow-server``, ``-name``, ``-key-dir`` and ``-datapaths`` on os-ken's config."""
    conf.register_cli_opts(OPTIONS, group="routeflow")


@dataclass(frozen=True)
class ControllerSettings:
    """Whom to report to, as whom, with which key, and which switches may connect (empty: any)."""

    server: str
    name: str
    keys: Path = auth.KEY_DIR
    datapaths: frozenset[int] = frozenset()

    @classmethod
    def from_conf(cls, conf: Any) -> ControllerSettings:
        """The settings in os-ken's configuration (``CONF.routeflow``, as :func:`register_options` declares it)."""
        return cls(conf.server, conf.name or socket.gethostname(), Path(conf.key_dir),
                   frozenset(int(d, 16) for d in conf.datapaths))
