"""Network namespaces, veth pairs, addresses and routes, through pyroute2.

All Netlink work goes through :class:`~pyroute2.AsyncIPRoute`, opened in the
namespace concerned with ``flags=0`` so that a missing namespace is an error
rather than silently created.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import AsyncIterator, Mapping, Sequence

from pyroute2 import AsyncIPRoute, netns
from pyroute2 import config as pyroute2_config
from pyroute2.ethtool.ioctl import IoctlEthtool
from pyroute2.netlink.exceptions import NetlinkError

from routeflow.vnet import VnetError

log = logging.getLogger("routeflow.vnet")

# pyroute2 forks short-lived children to enter namespaces and stops them
# with SIGTERM. A child forked from a process whose asyncio loop handles
# SIGTERM (the RF-Server) would run the inherited handler, which writes to
# the loop's wakeup fd shared with the parent: the parent then sees a
# SIGTERM and shuts down. This pyroute2 setting makes its children reset
# SIGTERM to the default first.
pyroute2_config.disable_mp_signal = True

IfAddress = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ifaddrmsg flag: skip IPv6 duplicate address detection (the address is usable at once).
IFA_F_NODAD = 0x02
#: Linux's limit on interface names (IFNAMSIZ less the terminating NUL).
IFNAME_MAX = 15


def netns_argv(name: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside network namespace ``name``."""
    return ["ip", "netns", "exec", name, *argv]


def netns_exists(name: str) -> bool:
    return name in netns.listnetns()


async def create_netns(name: str) -> None:
    """Create namespace ``name``; fail if it exists. Its ``lo`` is brought up."""
    if netns_exists(name):
        raise VnetError(f"network namespace {name} already exists")
    # pyroute2 forks a child to unshare; keep that off the event loop.
    await asyncio.to_thread(netns.create, name)
    async with rtnl(name) as ipr:
        await ipr.link("set", index=await _index(ipr, "lo", name), state="up")


#: How long the processes left in a namespace being removed have to exit on SIGTERM.
NETNS_GRACE = 3.0


async def remove_netns(name: str) -> None:
    """Remove namespace ``name`` (and with it its interfaces) if it exists, ending
    first every process still in it, whoever started it: a daemon started by hand
    inside a VM would otherwise run on in a namespace no name reaches."""
    if not netns_exists(name):
        return
    await end_processes_in(name)
    await asyncio.to_thread(netns.remove, name)


def netns_pids(name: str) -> list[int]:
    """The processes in namespace ``name`` (what ``ip netns pids`` lists): those whose
    network namespace is the one bound at /run/netns/NAME."""
    try:
        bound = os.stat(f"/run/netns/{name}")
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ns = os.stat(f"/proc/{entry}/ns/net")
            except OSError:
                continue  # gone, or a kernel thread
            if (ns.st_dev, ns.st_ino) == (bound.st_dev, bound.st_ino):
                pids.append(int(entry))
    return pids


async def end_processes_in(name: str, grace: float = NETNS_GRACE) -> list[int]:
    """SIGTERM every process in namespace ``name``, SIGKILL what is left after ``grace``
    seconds; return the PIDs found. Membership is read again before each signal, so a
    PID that ended and was reused outside the namespace is never signalled."""
    found = netns_pids(name)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in netns_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig == signal.SIGKILL:
            break
        deadline = time.monotonic() + grace
        while netns_pids(name) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    if found:
        log.info("namespace %s: ended %d process(es) still in it: %s", name, len(found),
                 ", ".join(map(str, found)))
    return found


@contextlib.asynccontextmanager
async def rtnl(namespace: str | None = None) -> AsyncIterator[AsyncIPRoute]:
    """An rtnetlink socket in ``namespace`` (None: this process's namespace)."""
    if namespace is not None and not netns_exists(namespace):
        raise VnetError(f"network namespace {namespace} does not exist")
    async with AsyncIPRoute(netns=namespace, flags=0) as ipr:
        yield ipr


async def _index(ipr: AsyncIPRoute, ifname: str, namespace: str | None) -> int:
    found = await ipr.link_lookup(ifname=ifname)
    if not found:
        raise VnetError(f"no interface {ifname} in {_where(namespace)}")
    return int(found[0])


def _where(namespace: str | None) -> str:
    return f"namespace {namespace}" if namespace else "the root namespace"


async def add_veth(ifname: str, peer: str, peer_netns: str | None = None, peer_mac: str | None = None,
                   netns: str | None = None) -> None:
    """Create veth ``ifname`` (in ``netns``, default here) with ``peer`` in ``peer_netns``, both up.

    The peer is created directly inside its namespace, so its name (often
    ``eth0``) never clashes with an interface of this one. Its TX checksum
    offload is turned off: Open vSwitch's userspace datapath reads the other
    end with a packet socket and would forward TCP and UDP segments with
    their checksums left unfilled, which the receiver drops.
    """
    peer_spec: dict[str, str] = {"ifname": peer}
    if peer_netns is not None:
        peer_spec["net_ns_fd"] = peer_netns
    if peer_mac is not None:
        peer_spec["address"] = peer_mac
    async with rtnl(netns) as ipr:
        try:
            await ipr.link("add", ifname=ifname, kind="veth", peer=peer_spec)
        except NetlinkError as exc:
            raise VnetError(f"cannot create veth {ifname} ({_where(netns)}) <-> {peer} ({_where(peer_netns)}): "
                            f"{exc}") from exc
        for name, namespace in ((ifname, netns), (peer, peer_netns)):
            if namespace is None:
                disable_ipv6(name)
        await ipr.link("set", index=await _index(ipr, ifname, netns), state="up")
    await asyncio.to_thread(disable_tx_checksum, peer, peer_netns)
    await set_link_state(peer, True, peer_netns)
    log.debug("veth %s <-> %s (%s)", ifname, peer, _where(peer_netns))


def disable_ipv6(ifname: str) -> None:
    """Turn IPv6 off on ``ifname`` of this process's namespace, before it goes up.

    The veth ends routeflow leaves in the root namespace are switch ports
    and RFVS ports: plumbing that carries frames for Open vSwitch (which
    reads them with packet sockets, unaffected) and owns no address. With
    IPv6 on, each would autoconfigure a link-local address and send router
    solicitations and MLD reports into the network it is part of.
    """
    try:
        Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6").write_text("1")
    except FileNotFoundError:  # IPv6 is off in this kernel altogether
        log.debug("no IPv6 configuration for %s", ifname)


def disable_tx_checksum(ifname: str, namespace: str | None = None) -> None:
    """Turn off TX checksum offload (and with it TSO) on ``ifname``."""
    # The ethtool ioctl acts on the namespace of the socket it is issued on.
    sock = netns.create_socket(namespace, socket.AF_INET, socket.SOCK_DGRAM) if namespace else None
    ethtool = IoctlEthtool()
    if sock is not None:
        ethtool.sock.close()
        ethtool.sock = sock
    try:
        ethtool.change_ifname(ifname)
        ethtool.set_offload_flag("tx-checksumming", 0)
    finally:
        ethtool.close()


async def delete_link(ifname: str, namespace: str | None = None) -> None:
    """Delete ``ifname`` (a veth: both ends) if it exists."""
    if namespace is not None and not netns_exists(namespace):
        return
    async with rtnl(namespace) as ipr:
        found = await ipr.link_lookup(ifname=ifname)
        if found:
            try:
                await ipr.link("del", index=found[0])
            except NetlinkError as exc:
                # Gone meanwhile: deleting one veth end also deletes its peer.
                if exc.code != 19:  # ENODEV
                    raise


async def set_link_state(ifname: str, up: bool, namespace: str | None = None) -> None:
    async with rtnl(namespace) as ipr:
        await ipr.link("set", index=await _index(ipr, ifname, namespace), state="up" if up else "down")


async def link_is_up(ifname: str, namespace: str | None = None) -> bool:
    """Whether ``ifname`` is administratively up."""
    async with rtnl(namespace) as ipr:
        index = await _index(ipr, ifname, namespace)
        link = (await ipr.link("get", index=index))[0]
        return bool(link["flags"] & 1)  # IFF_UP


async def add_addresses(namespace: str | None, ifname: str, addresses: Sequence[IfAddress]) -> None:
    """Add ``addresses`` to ``ifname``; IPv6 ones skip duplicate address detection."""
    async with rtnl(namespace) as ipr:
        index = await _index(ipr, ifname, namespace)
        for address in addresses:
            flags = IFA_F_NODAD if address.version == 6 else 0
            try:
                await ipr.addr("add", index=index, address=str(address.ip),
                               prefixlen=address.network.prefixlen, flags=flags)
            except NetlinkError as exc:
                raise VnetError(f"cannot add {address} to {ifname} in {_where(namespace)}: {exc}") from exc


async def remove_addresses(namespace: str | None, ifname: str, addresses: Sequence[IfAddress]) -> None:
    """Remove ``addresses`` from ``ifname`` (one already gone is no error)."""
    async with rtnl(namespace) as ipr:
        index = await _index(ipr, ifname, namespace)
        for address in addresses:
            try:
                await ipr.addr("del", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
            except NetlinkError as exc:
                if exc.code != 99:  # EADDRNOTAVAIL: not there
                    raise VnetError(f"cannot remove {address} from {ifname} in {_where(namespace)}: {exc}") from exc


async def set_mac(namespace: str | None, ifname: str, mac: str) -> None:
    """Give ``ifname`` the MAC address ``mac``."""
    async with rtnl(namespace) as ipr:
        try:
            await ipr.link("set", index=await _index(ipr, ifname, namespace), address=mac)
        except NetlinkError as exc:
            raise VnetError(f"cannot set the MAC of {ifname} in {_where(namespace)} to {mac}: {exc}") from exc


async def addresses(namespace: str | None, ifname: str) -> list[IfAddress]:
    """The addresses of ``ifname``, except IPv6 link-local ones."""
    async with rtnl(namespace) as ipr:
        index = await _index(ipr, ifname, namespace)
        found: list[IfAddress] = []
        async for msg in await ipr.addr("dump", index=index):
            found.append(ipaddress.ip_interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}"))
        return [a for a in found if not a.is_link_local]


async def add_default_route(namespace: str, gateway: IpAddress, ifname: str | None = None) -> None:
    """A default route via ``gateway`` (IPv4 or IPv6) out of ``ifname``, which a
    link-local gateway needs (it is the address's zone)."""
    async with rtnl(namespace) as ipr:
        dst = "0.0.0.0/0" if gateway.version == 4 else "::/0"
        oif = {"oif": await _index(ipr, ifname, namespace)} if ifname is not None else {}
        try:
            await ipr.route("add", dst=dst, gateway=str(gateway), **oif)
        except NetlinkError as exc:
            raise VnetError(f"cannot add default route via {gateway} in {_where(namespace)}: {exc}") from exc


async def set_sysctls(namespace: str, settings: Mapping[str, str]) -> None:
    """Write ``settings`` (``net.ipv4.ip_forward`` -> ``1``) inside ``namespace``.

    /proc/sys/net shows the namespace of the process reading it, so this
    runs ``sysctl`` inside the namespace.
    """
    argv = netns_argv(namespace, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())])
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise VnetError(f"sysctl in namespace {namespace} failed: {err.decode().strip()}")


async def existing_links(names: Sequence[str], namespace: str | None = None) -> list[str]:
    """Which of ``names`` exist as interfaces in ``namespace``."""
    async with rtnl(namespace) as ipr:
        present = {msg.get("IFLA_IFNAME") async for msg in await ipr.link("dump")}
    return [name for name in names if name in present]
