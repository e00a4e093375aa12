"""What the controller's pure objects hand back to the os-ken shim to send.

The table dumps (:mod:`~routeflow.controller.dumps`), the discovery prober
(:mod:`~routeflow.controller.discovery`) and the slow path
(:mod:`~routeflow.controller.relay`) hold no socket and read no clock: each
call returns a list of :data:`Action`, which the app sends through its one
send path (RF-protocol messages to the server, packets out of switch ports).
"""

from __future__ import annotations

from dataclasses import dataclass

from routeflow.protocol.messages import Message


@dataclass(frozen=True)
class PacketOut:
    """Send ``data`` out of port ``port`` of datapath ``dpid``."""

    dpid: int
    port: int
    data: bytes
    #: A relayed slow-path packet, counted in the controller's ``packet_out`` once it went out
    #: (a discovery probe is not).
    relayed: bool = False


#: A message to the server, or a packet out of a switch port.
Action = Message | PacketOut
