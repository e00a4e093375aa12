"""How a template (see :class:`~routeflow.config.schema.Template`) becomes a VM's config:
its pools' sizes, and the VM it makes for a switch, with its engine config rendered. Pure."""

from __future__ import annotations

import ipaddress
import string
from typing import Iterable

from routeflow.config.schema import TEMPLATE_POOL_MAX, TEMPLATE_PORT_MAX, Template, VmConfig, VmInterface


def pool_size(template: Template) -> int:
    """How many VMs the template's pools give: router ids, and host subnets if it has them."""
    size = ipaddress.IPv4Network(template.router_ids).num_addresses - 2
    if template.host_subnets is not None:
        size = min(size, (1 << (template.host_prefixlen - ipaddress.IPv4Network(template.host_subnets).prefixlen)) - 1)
    return max(0, min(size, TEMPLATE_POOL_MAX))


def vm_from_template(template: Template, n: int, dpid: int, ports: Iterable[int]) -> VmConfig:
    """VM ``n`` of ``template`` for switch ``dpid``: a NIC ``eth<port>`` per port of ``ports``
    (unnumbered, but for the host port; ports past TEMPLATE_PORT_MAX have none), its router
    id the ``n``-th of the pool, its engine config rendered."""
    router_id = ipaddress.IPv4Network(template.router_ids)[n]
    host_subnet = host_address = ""
    if template.host_subnets is not None:
        pool = ipaddress.IPv4Network(template.host_subnets)
        size = 1 << (32 - template.host_prefixlen)
        subnet = ipaddress.IPv4Network((int(pool.network_address) + n * size, template.host_prefixlen))
        host_subnet, host_address = str(subnet), f"{subnet[1]}/{template.host_prefixlen}"
    nics = []
    for port in sorted({p for p in ports if 0 < p <= TEMPLATE_PORT_MAX}):
        addresses = (host_address,) if port == template.host_port and host_address else (f"{router_id}/32",)
        nics.append(VmInterface(f"eth{port}", port, addresses))
    name = f"{template.name}{n}"
    interfaces = "".join(string.Template(template.nic_config).substitute(ifname=nic.name)
                         for nic in nics if nic.port != template.host_port)
    engine_config = string.Template(template.engine_config).substitute(
        name=name, dpid=f"{dpid:#x}", router_id=str(router_id), host_subnet=host_subnet,
        host_address=host_address, interfaces=interfaces)
    return VmConfig(name=name, dpid=dpid, interfaces=tuple(nics), engine=template.engine, daemons=template.daemons,
                    engine_config=engine_config, loopback=(f"{router_id}/32",))


def sample_vm(template: Template) -> VmConfig:
    """The VM ``template`` would make for a first switch with ports 1 to 3 up (what ``routeflow
    check`` has the engine parse)."""
    return vm_from_template(template, 1, template.admit[0] if template.admit else 1, (1, 2, 3))
