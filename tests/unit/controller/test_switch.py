"""What the app reads from an os-ken datapath, and hanging up on one."""

from __future__ import annotations

import socket
import threading
import time

from os_ken.ofproto import ofproto_v1_3 as ofp

from routeflow.controller import app as appmod
from routeflow.controller.switch import hang_up, peer, port_desc
from routeflow.model import PortDesc

from .switches import FakeDatapath, ofport
from .wire import split_messages


def test_port_desc_conversion():
    assert port_desc(ofport(3, "s1-eth3", mac="AA:00:00:00:00:03")) == PortDesc(3, "s1-eth3", "aa:00:00:00:00:03", True)
    assert not port_desc(ofport(1, config=ofp.OFPPC_PORT_DOWN)).up
    assert not port_desc(ofport(1, state=ofp.OFPPS_LINK_DOWN)).up
    assert port_desc(ofport(ofp.OFPP_LOCAL)) is None


def test_hang_up_ends_os_kens_threads_for_the_connection():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        switch = socket.create_connection(listener.getsockname())
        ours, address = listener.accept()
    dp = appmod.Datapath(ours, address)  # os-ken's, imported after its app manager
    server = threading.Thread(target=dp.serve, daemon=True)
    server.start()
    with switch:
        assert split_messages(switch.recv(8))[0][0] == ofp.OFPT_HELLO
        time.sleep(0.2)  # os-ken's sending thread back to waiting on its queue: what hang_up must wake
        hang_up(dp)
        assert switch.recv(8) == b""  # our end closed for writing
    server.join(2)
    assert not server.is_alive() and not dp.is_active


def test_peer_names_the_switch_end_of_the_connection():
    dp = FakeDatapath(1)
    assert peer(dp) == "127.0.0.1:40001"
    dp.address = ("::1", 6653, 0, 0)
    assert peer(dp) == "[::1]:6653"
