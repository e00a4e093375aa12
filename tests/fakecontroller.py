"""The RF-Controller as the server core's tests see it: it carries the core's
TableMods to fake switches and answers its dumps from them, so a test asserts on
where packets go (:class:`tests.fakeswitch.FakeSwitch`), not on message lists."""

from __future__ import annotations

from routeflow.protocol.messages import DatapathJoin, DumpTable, Message, TableMod
from routeflow.server.core import CONTROLLER, Out, ServerCore
from tests.fakeswitch import FakeSwitch


class FakeController:
    """Delivers what a :class:`ServerCore` says to the controller, and what comes
    back, until the core has nothing more to say; keeps what it says to VMs."""

    def __init__(self, core: ServerCore, *switches: FakeSwitch) -> None:
        self.core = core
        self.switches = {switch.dpid: switch for switch in switches}
        #: Dumps to answer with an error before answering them again (a switch busy or
        #: disconnecting as the controller asks).
        self.failing_dumps = 0
        #: Every message the core sent to a VM, in order: (VM, message).
        self.to_vms: list[tuple[str, Message]] = []

    def connect(self) -> None:
        """The controller comes up and every switch joins it."""
        self.run(self.core.on_controller_up())
        for switch in self.switches.values():
            self.run(self.core.on_datapath_join(DatapathJoin(switch.dpid, tuple(switch.ports.values()))))

    def run(self, out: list[Out]) -> None:
        """Deliver ``out``, what the core answers to it, and each reconcile after, until quiet."""
        while True:
            pending = list(out)
            while pending:
                item = pending.pop(0)
                if item.to != CONTROLLER:
                    self.to_vms.append((item.to, item.msg))
                elif isinstance(item.msg, TableMod):
                    self.switches[item.msg.dpid].apply(item.msg)
                elif isinstance(item.msg, DumpTable):
                    error = "the switch is busy" if self.failing_dumps else ""
                    self.failing_dumps -= bool(error)
                    pending += self.core.on_table_dump(self.switches[item.msg.dpid].dump(item.msg.request_id, error))
                # The relay map and discovery plan change nothing a switch holds.
            out = self.core.reconcile()
            if not out:
                return

    def sent_to(self, vm: str, kind: type[Message]) -> list[Message]:
        """What the core has sent ``vm`` of ``kind`` so far."""
        return [msg for to, msg in self.to_vms if to == vm and isinstance(msg, kind)]
