"""Run the RF-Controller: os-ken in-process, without ``osken-manager``."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from os_ken import cfg
from os_ken.base.app_manager import AppManager
from os_ken.lib import hub

from routeflow.controller.settings import register_options
from routeflow.protocol import pki
from routeflow.protocol.auth import KEY_DIR
from routeflow.protocol.transport import parse_addresses

LOG = logging.getLogger("routeflow.controller")
APP_MODULE = "routeflow.controller.app"
#: os-ken's echo loop: a request every second, and a switch that leaves three unanswered is
#: closed. It also wakes the connection's send thread, which on os-ken's native-thread hub is
#: what lets a closed connection end at all: without a send it waits forever, and a switch
#: that hung up would stay "up" until the controller next had something for it.
ECHO_INTERVAL, ECHO_UNANSWERED = 1.0, 3


def _check_listen(host: str, port: int) -> None:
    """Raise OSError saying why, if an OpenFlow listener cannot have ``host:port``.

    os-ken opens its listener in a thread of its own, whose failure only stops the
    controller, without the reason: the port is tried here first, as os-ken binds it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # os-ken's choice of family
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise OSError(f"cannot listen for OpenFlow on {host}:{port}: {exc.strerror or exc}") from None


def run(server: str, of_port: int = 6653, of_host: str = "127.0.0.1", name: str = "",
        keys: Path = KEY_DIR, datapaths: Sequence[int] = (), tls: bool = False) -> None:
    """Serve OpenFlow switches on ``of_host:of_port`` for the RF-Server at ``server``,
    proving itself with the controller's key in ``keys``; only ``datapaths`` may
    connect (any if empty). With ``tls`` the OpenFlow port speaks TLS only: the
    controller presents its certificate from ``keys`` and a switch must present
    one signed by the same CA (``ssl:`` controller targets).

    ``name`` is what it tells the server it is (default ``HOST:OF_PORT``): of two
    controllers serving the same switches the server elects one active and keeps the
    other standing by, and a controller of the same name replaces its predecessor
    (most likely a dead connection), so two must have different names.

    Blocks until SIGTERM or SIGINT (when called from the main thread), then says
    goodbye to the server and returns. Raises OSError, before anything starts, if
    ``of_host:of_port`` cannot be listened on (taken, or not an address of this
    host), and RuntimeError if os-ken stops by itself. Once per process: os-ken's
    configuration and application manager are process-wide.
    """
    parse_addresses(server)  # a bad address fails here, not in a retry loop
    _check_listen(of_host, of_port)
    openflow_tls: list[str] = []
    if tls:
        pki.ensure(keys, ["controller"])  # made on the host that holds the CA, if missing
        cred = pki.credential(keys, "controller")
        pki.server_context(keys, "controller")  # fails here, with the remedy, if a file is unusable
        # os-ken then listens with TLS alone, on its TLS port, and requires a client certificate.
        openflow_tls = ["--ofp-ssl-listen-port", str(of_port), "--ctl-privkey", str(cred.key),
                        "--ctl-cert", str(cred.cert), "--ca-certs", str(pki.tls_dir(keys) / "ca.crt")]
    register_options(cfg.CONF)
    cfg.CONF(
        args=[
            *openflow_tls,
            "--ofp-tcp-listen-port", str(of_port),
            "--ofp-listen-host", of_host,
            "--routeflow-server", server,
            "--routeflow-name", name or f"{socket.gethostname()}:{of_port}"[-64:],
            "--routeflow-key-dir", str(keys),
            "--routeflow-datapaths", ",".join(f"{dpid:x}" for dpid in datapaths),
        ],
        project="os_ken",
    )
    # Not command-line options in os-ken: set, not parsed.
    cfg.CONF.set_override("echo_request_interval", ECHO_INTERVAL)
    cfg.CONF.set_override("maximum_unreplied_echo_requests", ECHO_UNANSWERED)
    stop = threading.Event()
    signalled = threading.Event()
    started = threading.Event()
    manager = AppManager.get_instance()

    def serve() -> None:
        # AppManager.run_apps, with a mark once every app has started: closing
        # the apps while os-ken still starts them breaks its iteration over them.
        try:
            manager.load_apps([APP_MODULE])
            services = manager.instantiate_apps(**manager.create_contexts())
            started.set()
            hub.joinall(services)
        except Exception:
            LOG.exception("os-ken failed")
        finally:
            stop.set()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        LOG.info("%s: stopping", signal.Signals(signum).name)
        signalled.set()
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    # os-ken's threads inherit daemon status from the thread that spawns them:
    # started from a daemon thread, none of them (its accept loop has no stop)
    # can keep the process alive after we return.
    runner = threading.Thread(target=serve, name="os-ken", daemon=True)
    LOG.info("RF-Controller listening on %s:%d%s, server %s", of_host, of_port, " (TLS)" if tls else "", server)
    runner.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        while runner.is_alive() and not started.wait(0.1):
            pass
        manager.close()
    if not signalled.is_set():
        raise RuntimeError(f"os-ken stopped unexpectedly (is {of_host}:{of_port} in use?)")
    LOG.info("RF-Controller stopped")
