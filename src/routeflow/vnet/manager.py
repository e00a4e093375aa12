"""The virtual environment of a config: RFVS, VMs, engines and supervised RF-Clients.

The RF-Server runs it inside its event loop::

    async with VirtualEnvironment(config) as venv:
        ...   # VMs up, engines running, RF-Clients supervised

Leaving the block, normally or not, tears everything down; so does a
failing bring-up. What was created is recorded in a state file, with a
digest of each VM's plan. A run that finds the record of one that ended
without tearing down (killed, or :meth:`VirtualEnvironment.leave`) adopts
each VM its own plan would create the same and that is still whole: its
namespace, interfaces, engine and RF-Client keep running untouched, so
routing adjacencies and forwarding survive an RF-Server restart. The rest
is removed and created again; :func:`cleanup_stale` removes all of it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import logging
from pathlib import Path
from typing import IO, Callable, Sequence

from routeflow.config.schema import Config, VmConfig
from routeflow.private import SHARED_DIR_MODE, private_dir
from routeflow.protocol.auth import KEY_DIR
from routeflow.vnet import VnetError, frr, links, ovs
from routeflow.vnet.driver import NamespaceDriver, VmDriver
from routeflow.vnet.plan import VmPlan, client_argv, client_server_address, digest, plan_vm, plan_vnet, vm_digests
from routeflow.vnet.resources import (
    Lifecycle,
    Resource,
    ResourceLog,
    is_running,
    missing,
    running_record,
    stop_process,
    teardown,
)
from routeflow.vnet.supervisor import ClientSupervisor, EngineSupervisor, client_name

log = logging.getLogger("routeflow.vnet")

DEFAULT_STATE = Path("/run/routeflow/vnet.json")
#: The RF-Client command for a VM name (run inside that VM).
ClientArgv = Callable[[str], Sequence[str]]
#: Makes the VM driver from the RFVS bridge name and the record to log into.
DriverFactory = Callable[[str, ResourceLog], VmDriver]
#: The state file's meta key holding, by owner (a VM, or RFVS), the digests of what
#: was created: a later run compares them with its own plan.
PLANS = "plans"
#: Owner of the RFVS bridge (and its TLS setting) in the record.
RFVS = "rfvs"
#: The part of a VM's recorded plan that is its RF-Client's command (not in its VmPlan).
CLIENT = "client"
#: State-file meta: the VMs made at runtime for switches that joined, each with its
#: datapath and ports, for a restarted server to make them again as they are (and adopt them).
MADE = "made"


class VirtualEnvironment(Lifecycle):
    """The RFVS bridge and the VMs of ``config``, their engines and RF-Clients.

    ``client_argv`` gives the RF-Client command of a VM (default:
    ``python -m routeflow client`` on the server's Unix socket);
    ``start_clients=False`` starts none (the VMs are then without clients).
    ``driver`` makes the VM driver (default: network namespaces). Only one
    virtual environment may use a state file at a time (it is locked), and
    VM engines keep their files under ``run_root/<vm>/``. What a previous
    run recorded there is adopted or removed (:meth:`start`).
    """

    def __init__(self, config: Config, *, state_path: Path = DEFAULT_STATE,
                 run_root: Path = frr.DEFAULT_RUN_ROOT, client_argv: ClientArgv | None = None,
                 start_clients: bool = True, driver: DriverFactory = NamespaceDriver,
                 min_backoff: float = 0.5, max_backoff: float = 30.0, keys: Path = KEY_DIR) -> None:
        self.config = config
        #: Where the RFVS's TLS credential is, if its controller target is ``ssl:``.
        self.keys = keys
        self.plan = plan_vnet(config, run_root)
        self.run_root = run_root
        self.state_path = Path(state_path)
        self.record = ResourceLog(self.state_path)
        self.driver = driver(self.plan.bridge.name, self.record)
        if client_argv is None:
            client_argv = default_client_argv(config)
        self._client_argv = client_argv if start_clients else None
        self._backoff = (min_backoff, max_backoff)
        self.supervisors: dict[str, ClientSupervisor] = {}
        #: The routing daemons of each VM, restarted when they exit.
        self.engines: dict[str, EngineSupervisor] = {}
        self._lock: IO[str] | None = None
        self._left = False

    async def start(self) -> None:
        """Bring everything up; on failure tear down what was made and re-raise.

        If the state file records a previous run, each of its VMs this plan would
        create the same (NICs, addresses, MACs, engine and its rendered config,
        on the same RFVS) and that is whole (namespace, interfaces and ports,
        engine processes with their recorded start times) is adopted: nothing
        of it is removed or restarted, and its RF-Client, if still running, is
        supervised again. The other VMs recorded are removed, and those the
        plan needs created; each VM's fate is logged with the reason.
        """
        self._lock = _acquire_lock(self.state_path)
        try:
            await ovs.check_running()
            kept, clients = await self._take_over() if self.state_path.exists() else (set(), {})
            await self._check_free(kept)
            if RFVS not in kept:
                await self._add_bridge()
            for vm in self.plan.vms:
                if vm.name not in kept:
                    await self.driver.create(vm)
                    await self.driver.start_engine(vm)
                    self._record_plan(vm.name, vm_digests(vm))
            for vm in self.plan.vms:
                self.engines[vm.name] = EngineSupervisor(vm, self.record, *self._backoff)
                self.engines[vm.name].start()
            if self._client_argv is not None:
                for vm in self.plan.vms:
                    argv = self._client_argv(vm.name)
                    supervisor = ClientSupervisor(vm, argv, self.driver, self.record, *self._backoff)
                    self.supervisors[vm.name] = supervisor
                    self._record_plan(vm.name, {CLIENT: digest(argv)})
                    client = clients.get(vm.name)
                    await (supervisor.adopt(client) if client is not None else supervisor.start())
        except BaseException:
            log.error("bringing up the virtual environment failed; removing what was created")
            try:
                await self.stop()
            except VnetError as exc:
                log.error("%s", exc)
            raise
        log.info("virtual environment up: %d VMs on %s (%d adopted)", len(self.plan.vms), self.plan.bridge.name,
                 len(kept - {RFVS}))

    async def add(self, vm: VmConfig) -> None:
        """Make and start one more VM (one the server made for a switch that joined): its
        namespace and NICs on the RFVS, its engine and RF-Client, all supervised as the others."""
        plan = plan_vm(vm, self.run_root)
        if any(v.name == vm.name for v in self.plan.vms):
            raise VnetError(f"VM {vm.name} exists already")
        if links.netns_exists(plan.netns):
            raise VnetError(f"cannot create VM {vm.name}: namespace {plan.netns} is in use")
        self.plan = dataclasses.replace(self.plan, vms=(*self.plan.vms, plan))
        await self.driver.create(plan)
        await self.driver.start_engine(plan)
        self._record_plan(plan.name, vm_digests(plan))
        self._record_made(vm)
        self.engines[plan.name] = EngineSupervisor(plan, self.record, *self._backoff)
        self.engines[plan.name].start()
        if self._client_argv is not None:
            argv = self._client_argv(plan.name)
            supervisor = self.supervisors[plan.name] = ClientSupervisor(plan, argv, self.driver, self.record,
                                                                         *self._backoff)
            self._record_plan(plan.name, {CLIENT: digest(argv)})
            await supervisor.start()
        log.info("VM %s up: %d NICs, engine %s", plan.name, len(plan.nics), plan.engine)

    async def update(self, vm: VmConfig) -> None:
        """Make running VM ``vm.name`` what ``vm`` says, with nothing restarted: NICs added
        (ports that came up on its switch, a reload) or removed, their addresses and MACs,
        its loopback, and its engine's configuration, which the running engine takes
        (:meth:`~routeflow.vnet.driver.VmDriver.reload_engine`)."""
        plan, old = plan_vm(vm, self.run_root), self.plan.vm(vm.name)
        had = {nic.name: nic for nic in old.nics}
        wanted = {nic.name for nic in plan.nics}
        for nic in old.nics:
            if nic.name not in wanted:
                await self.driver.remove_nic(old, nic)
        for nic in plan.nics:
            before = had.get(nic.name)
            if before is None:
                await self.driver.add_nic(plan, nic)
                continue
            if before.addresses != nic.addresses:
                await self.driver.readdress(plan, nic.name, before.addresses, nic.addresses)
            if nic.mac is not None and before.mac != nic.mac:
                await self.driver.set_mac(plan, nic.name, nic.mac)
        if old.loopback != plan.loopback:
            await self.driver.readdress(plan, "lo", old.loopback, plan.loopback)
        self.plan = dataclasses.replace(self.plan, vms=tuple(plan if v.name == vm.name else v for v in self.plan.vms))
        self._record_plan(plan.name, vm_digests(plan))
        if vm.name in self.record.meta.get(MADE, {}):
            self._record_made(vm)
        if old.engine_conf != plan.engine_conf:
            await self.driver.reload_engine(plan)
        if vm.name in self.engines:  # a daemon restarted later starts with what it has now
            self.engines[vm.name].vm = plan
        log.info("VM %s updated: NICs %s added, %s removed", vm.name,
                 ", ".join(sorted(wanted - set(had))) or "none", ", ".join(sorted(set(had) - wanted)) or "none")

    async def remove(self, name: str) -> None:
        """Stop and remove VM ``name`` (its switch gone for good)."""
        plan = self.plan.vm(name)
        self._drop_plan(name)
        if self.record.meta.get(MADE, {}).pop(name, None) is not None:
            self.record.save()
        engine = self.engines.pop(name, None)
        if engine is not None:
            await engine.stop()
        supervisor = self.supervisors.pop(name, None)
        if supervisor is not None:
            await supervisor.stop()
        await self.driver.destroy(plan)
        self.plan = dataclasses.replace(self.plan, vms=tuple(v for v in self.plan.vms if v.name != name))

    async def _add_bridge(self) -> None:
        if self.plan.bridge.tls:
            self.record.add(Resource("ssl", "openvswitch", RFVS))
            await ovs.set_switch_credential(self.keys)
        self.record.add(Resource("bridge", self.plan.bridge.name, RFVS))
        await ovs.add_bridge(self.plan.bridge)
        self._record_plan(RFVS, {"bridge": self._bridge_digest()})

    def _bridge_digest(self) -> str:
        # The TLS credential Open vSwitch presents comes from the key directory.
        ssl = self.plan.bridge.tls
        return digest((self.plan.bridge, str(self.keys) if ssl else None))

    def _record_plan(self, owner: str, parts: dict[str, str]) -> None:
        self.record.meta.setdefault(PLANS, {}).setdefault(owner, {}).update(parts)
        self.record.save()

    def _record_made(self, vm: VmConfig) -> None:
        self.record.meta.setdefault(MADE, {})[vm.name] = {"dpid": vm.dpid, "ports": [n.port for n in vm.interfaces]}
        self.record.save()

    def _drop_plan(self, owner: str) -> None:
        """Forget ``owner``'s plan before removing it: what is left of it if that
        fails halfway is never adopted."""
        if self.record.meta.get(PLANS, {}).pop(owner, None) is not None:
            self.record.save()

    async def _take_over(self) -> tuple[set[str], dict[str, Resource]]:
        """Adopt what the previous run recorded that this plan would create the same
        and that is whole; remove the rest. Returns the owners kept (VM names, and
        RFVS if its bridge is) and, by VM, the running RF-Clients to adopt."""
        previous = ResourceLog.load(self.state_path)
        self.record.resources, self.record.meta = previous.resources, previous.meta
        plans = self.record.meta.get(PLANS, {})
        recorded = {r.owner for r in self.record.resources} | set(plans)
        bridge_change = await self._bridge_change(plans.get(RFVS))
        kept: set[str] = set() if bridge_change else {RFVS}
        clients: dict[str, Resource] = {}
        for vm in self.plan.vms:
            if vm.name not in recorded:
                log.info("VM %s: created (not in the previous run)", vm.name)
                continue
            change = bridge_change or await self._vm_change(vm, plans.get(vm.name))
            if change:
                log.info("VM %s: recreated (%s)", vm.name, change)
                continue
            kept.add(vm.name)
            client, fate = await self._take_over_client(vm, plans[vm.name])
            if client is not None:
                clients[vm.name] = client
            engine = ", ".join(f"{Path(r.name).stem} {r.pid}" for r in self.record.of(vm.name, "process")
                               if r.name != client_name(vm.name))
            log.info("VM %s: adopted (namespace %s, %s; %s)", vm.name, vm.netns, engine or "no engine", fate)
        configured = {vm.name for vm in self.plan.vms}
        for owner in sorted(recorded - configured - {RFVS}):
            log.info("VM %s: removed (no longer configured)", owner)
        if bridge_change and RFVS in recorded:
            log.info("RFVS %s: recreated (%s)", self.plan.bridge.name, bridge_change)
        doomed = sorted(recorded - kept - {RFVS})
        if RFVS not in kept:
            doomed.append(RFVS)  # last: the VMs' ports are on its bridge
        failures = []
        for owner in doomed:
            self._drop_plan(owner)
            failures += await teardown(self.record, owner)
        if failures:
            raise VnetError(f"what the previous run recorded in {self.state_path} was not all removed: "
                            + "; ".join(failures))
        return kept, clients

    async def _bridge_change(self, recorded: dict[str, str] | None) -> str:
        """Why the previous run's RFVS bridge cannot be kept ("" if it can)."""
        spec = self.plan.bridge
        if recorded is None:
            return "the previous run recorded no complete RFVS"
        if recorded.get("bridge") != self._bridge_digest():
            return f"the RFVS bridge {spec.name} is planned differently"
        gone = await missing(self.record.of(RFVS))
        if not gone:
            planned = {name for name, _ in spec.ports} | {name for name, _, _ in spec.patches}
            gone = [f"port {name}" for name in sorted(planned - set(await ovs.list_ports(spec.name)))]
        return f"the RFVS is not whole, gone: {', '.join(gone)}" if gone else ""

    async def _vm_change(self, vm: VmPlan, recorded: dict[str, str] | None) -> str:
        """Why the previous run's ``vm`` cannot be adopted ("" if it can)."""
        if recorded is None:
            return "its bring-up had not finished"
        changed = [part for part, value in vm_digests(vm).items() if recorded.get(part) != value]
        if changed:
            return f"planned differently: {', '.join(changed)}"
        gone = await missing([r for r in self.record.of(vm.name) if r.name != client_name(vm.name)])
        if gone:
            return f"not whole, gone: {', '.join(gone)}"
        for process in self.record.of(vm.name, "process"):
            # A daemon restarted in place (found by its pidfile) is recorded as it runs now.
            now = running_record(process)
            if now is not None and now != process:
                self.record.update(process, now)
        if not self.driver.is_alive(vm):
            return "its engine is not running"
        return ""

    async def _take_over_client(self, vm: VmPlan, recorded: dict[str, str]) -> tuple[Resource | None, str]:
        """The previous run's RF-Client of adopted ``vm`` to adopt, if it runs the command
        this run would; any other is stopped. Returns it and what became of it."""
        argv = self._client_argv(vm.name) if self._client_argv is not None else None
        same = argv is not None and recorded.get(CLIENT) == digest(argv)
        adopted = None
        fate = "RF-Client to be started: it had exited" if argv is not None else "no RF-Client"
        for client in self.record.of(vm.name, "process"):
            if client.name != client_name(vm.name):
                continue
            if adopted is None and same and is_running(client):
                adopted = client
                fate = f"RF-Client {client.pid}"
                continue
            if is_running(client):
                fate = ("RF-Client restarted: its command changed" if argv is not None
                        else "RF-Client stopped: clients are not started")
                await stop_process(client)
            self.record.discard(client)
        return adopted, fate

    async def stop(self) -> None:
        """Stop the clients, then remove the VMs and the RFVS; raise VnetError if something
        stays. After :meth:`leave`, nothing."""
        if self._left:
            return
        # Whatever is left of it if removal fails halfway must never be adopted.
        if self.record.meta.pop(PLANS, None) is not None:
            self.record.save()
        await self._stop_engine_supervisors()
        for supervisor in self.supervisors.values():
            await supervisor.stop()
        self.supervisors.clear()
        failures = []
        for vm in reversed(self.plan.vms):
            try:
                await self.driver.destroy(vm)
            except VnetError as exc:
                failures.append(str(exc))
        failures += await teardown(self.record)
        if not failures and self._lock is not None:  # the file is ours only while we hold the lock
            self.record.remove_file()
        _release_lock(self._lock)
        self._lock = None
        if failures:
            raise VnetError("virtual environment not fully removed: " + "; ".join(failures))
        log.info("virtual environment down")

    async def leave(self) -> None:
        """Stop supervising and unlock the state file, leaving the VMs, their engines and
        RF-Clients running and recorded, for the next run to adopt; :meth:`stop` then
        removes nothing. The RF-Clients this process started are its children, which
        asyncio kills when it closes their transports: a process that leaves exits
        without that clean-up (``os._exit``)."""
        await self._stop_engine_supervisors()
        for supervisor in self.supervisors.values():
            await supervisor.leave()
        self.supervisors.clear()
        _release_lock(self._lock)
        self._lock = None
        self._left = True
        log.info("virtual environment left running for the next run to adopt: %d VMs on %s",
                 len(self.plan.vms), self.plan.bridge.name)

    async def _stop_engine_supervisors(self) -> None:
        for supervisor in self.engines.values():
            await supervisor.stop()
        self.engines.clear()

    async def _check_free(self, kept: set[str]) -> None:
        """Raise if a name this run is to create is taken (``kept``: the owners adopted)."""
        new = [vm for vm in self.plan.vms if vm.name not in kept]
        taken = [f"namespace {vm.netns}" for vm in new if links.netns_exists(vm.netns)]
        if RFVS not in kept and self.plan.bridge.name in await ovs.list_bridges():
            taken.append(f"bridge {self.plan.bridge.name}")
        names = [nic.host_ifname for vm in new for nic in vm.nics]
        taken += [f"interface {name}" for name in await links.existing_links(names)]
        if taken:
            raise VnetError(f"cannot create the VMs of {self.config.source or 'the config'}: already in use: "
                            f"{', '.join(taken)} (another routeflow server, or a lab using these names?)")

    def client_pid(self, vm: str) -> int | None:
        """The pid of ``vm``'s running RF-Client (started or adopted), if any."""
        supervisor = self.supervisors.get(vm)
        return supervisor.pid if supervisor else None

    def is_alive(self, vm: str) -> bool:
        return self.driver.is_alive(self.plan.vm(vm))


def made_vms(state_path: Path = DEFAULT_STATE) -> dict[str, tuple[int, tuple[int, ...]]]:
    """The VMs a previous run made for switches that joined, as its state file records them:
    name -> (datapath id, switch ports of its NICs). Nothing if there is no (readable) record."""
    if not state_path.exists():
        return {}
    try:
        made = ResourceLog.load(state_path).meta.get(MADE, {})
        return {name: (int(entry["dpid"]), tuple(int(p) for p in entry["ports"])) for name, entry in made.items()}
    except (VnetError, KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("the VMs made by the previous run are not known (%s): they are made again", exc)
        return {}


def default_client_argv(config: Config, keys: Path = KEY_DIR) -> ClientArgv:
    """``python -m routeflow client --vm NAME --server ADDR --keys DIR`` for the VMs of ``config``."""
    return functools.partial(client_argv, server=client_server_address(config), keys=keys)


async def cleanup_stale(state_path: Path = DEFAULT_STATE, locked: bool = False) -> bool:
    """Remove what a crashed run recorded in ``state_path``; False if nothing was recorded.

    Takes the state file's lock (unless the caller holds it), so a running
    virtual environment is never cleaned up under its feet.
    """
    state_path = Path(state_path)
    lock = None if locked else _acquire_lock(state_path)
    try:
        if not state_path.exists():
            return False
        record = ResourceLog.load(state_path)
        failures = await teardown(record)
        if failures:
            raise VnetError(f"stale resources in {state_path} not removed: " + "; ".join(failures))
        record.remove_file()
        return True
    finally:
        _release_lock(lock)


def _acquire_lock(state_path: Path) -> IO[str]:
    path = state_path.with_suffix(".lock")
    private_dir(path.parent, mode=SHARED_DIR_MODE)
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise VnetError(f"another routeflow virtual environment is running (lock {path} is held)") from None
    return handle


def _release_lock(handle: IO[str] | None) -> None:
    if handle is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
