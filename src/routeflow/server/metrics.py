"""Prometheus metrics of the RF-Server, served at ``/metrics`` of its HTTP surface.

Names follow Prometheus's conventions (snake_case, base units, ``_total`` for counters)
and labels FAUCET's (``dp_id``, ``dp_name``, ``port``, ``vm``), so a FAUCET operator's
dashboards read them the same way. Most are read from the NIB when scraped (nothing to
keep in step on the hot path); the controller's packet counters come with each scrape
from the controller; what only the moment knows (how long a route took to become a
flow, peers connecting, verify results) is counted as it happens by :class:`ServerMetrics`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from routeflow.protocol.messages import ControllerStats
from routeflow.server.status import datapath_ids, datapath_names

if TYPE_CHECKING:
    from routeflow.server.nib import Nib

#: Route-to-flow latency buckets, seconds: from a route reaching the server to its TableMod
#: leaving for the controller (coalescing and compiling included).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServerMetrics:
    """The server's metrics: a registry of its own (several servers in one process, in the
    tests, never share one), event counters, and the NIB read at scrape time."""

    def __init__(self, nib: Nib) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._nib_collector = NibCollector(nib)
        self.registry.register(self._nib_collector)
        self.route_to_flow = Histogram(
            "routeflow_route_to_flow_seconds",
            "Time from a VM's FIB change reaching the server to the TableMod it caused leaving for the controller",
            registry=self.registry, buckets=LATENCY_BUCKETS)
        self.peer_connections = Counter(
            "routeflow_peer_connections", "RF-protocol peers that completed their handshake (reconnects included)",
            ["role"], registry=self.registry)
        self.auth_failures = Counter(
            "routeflow_auth_failures", "RF-protocol peers refused for failing to prove who they are",
            registry=self.registry)
        self.verify_runs = Counter("routeflow_verify_runs", "Verify runs completed", registry=self.registry)
        self.verify_differences = Gauge(
            "routeflow_verify_differences", "Differences the last verify found (0: every switch holds what its FIB says)",
            registry=self.registry)
        self.reloads = Counter("routeflow_reloads", "Configuration reloads, by result (applied or refused)",
                               ["result"], registry=self.registry)
        self.reload_flow_mods = Counter("routeflow_reload_flow_mods",
                                        "FlowMods sent by configuration reloads, by datapath", ["dp_id"],
                                        registry=self.registry)
        self.peers_connected = Gauge("routeflow_peers_connected", "RF-protocol peers connected now", ["role"],
                                     registry=self.registry)
        #: Per VM, when its oldest change not yet sent as flows reached the server.
        self._pending: dict[str, float] = {}

    def fib_changed(self, vm: str, now: float) -> None:
        self._pending.setdefault(vm, now)

    def tables_sent(self, vms: list[str], now: float) -> None:
        """The TableMods of one reconcile left for the controller: ``vms``' changes are flows now.
        A change that made no flow change (and so no TableMod) is forgotten, not counted late."""
        for vm in vms:
            since = self._pending.get(vm)
            if since is not None:
                self.route_to_flow.observe(max(0.0, now - since))
        self._pending.clear()

    def exposition(self, stats: ControllerStats | None, peers: dict[str, int]) -> bytes:
        """The text exposition, with the controller's counters of this scrape (None: unreachable)
        and the RF-protocol peers connected now, by role."""
        self._nib_collector.stats = stats
        for role, count in peers.items():
            self.peers_connected.labels(role).set(count)
        return generate_latest(self.registry)


class NibCollector(Collector):
    """Gauges and counters read from the NIB (and the controller's counters) at scrape time."""

    def __init__(self, nib: Nib) -> None:
        self.nib = nib
        self.stats: ControllerStats | None = None

    def collect(self) -> Iterator[Metric]:
        nib = self.nib
        names = datapath_names(nib.config)
        dp_labels = ["dp_id", "dp_name"]
        controller = GaugeMetricFamily("routeflow_controller_connected", "The RF-Controller is connected")
        controller.add_metric([], 1 if nib.controller_connected else 0)
        yield controller

        status = GaugeMetricFamily("routeflow_dp_status", "Datapath connected (1) or not (0)", labels=dp_labels)
        ports = GaugeMetricFamily("routeflow_port_status", "Switch port up (1) or down (0)",
                                  labels=[*dp_labels, "port", "port_name"])
        flows = GaugeMetricFamily("routeflow_dp_flows", "Flow entries installed on the datapath", labels=dp_labels)
        groups = GaugeMetricFamily("routeflow_dp_groups", "Group entries installed on the datapath", labels=dp_labels)
        flow_mods = CounterMetricFamily("routeflow_flow_mods_sent", "Flow and group changes sent to the datapath",
                                        labels=dp_labels)
        unresolved = GaugeMetricFamily("routeflow_dp_unresolved_next_hops",
                                       "Routes waiting for their next hop's MAC", labels=dp_labels)
        for dpid in datapath_ids(nib):
            labels = [f"{dpid:#x}", names.get(dpid, "")]
            dp = nib.datapaths.get(dpid)
            status.add_metric(labels, 1 if dp else 0)
            if dp is None:
                continue
            for port in sorted(dp.ports.values()):
                ports.add_metric([*labels, str(port.port_no), port.name], 1 if port.up else 0)
            flows.add_metric(labels, len(dp.installed.flows) if dp.installed else 0)
            groups.add_metric(labels, len(dp.installed.groups) if dp.installed else 0)
            flow_mods.add_metric(labels, dp.flow_mods)
            unresolved.add_metric(labels, sum(len(nib.vms[vm.name].unresolved)
                                              for vm in nib.config.vms_of_dpid(dpid)))
        yield from (status, ports, flows, groups, flow_mods, unresolved)

        routes = GaugeMetricFamily("routeflow_vm_routes", "Routes in the VM's FIB", labels=["vm"])
        neighbours = GaugeMetricFamily("routeflow_vm_neighbours", "Resolved neighbours of the VM", labels=["vm"])
        client = GaugeMetricFamily("routeflow_vm_client_connected", "The VM's RF-Client is connected", labels=["vm"])
        repaired = CounterMetricFamily("routeflow_vm_fib_repaired",
                                       "Routes the VM's FIB audits found changed without an event", labels=["vm"])
        for vm in nib.config.vms:
            state = nib.vms[vm.name]
            routes.add_metric([vm.name], len(state.routes))
            neighbours.add_metric([vm.name], len(state.neighbours))
            client.add_metric([vm.name], 1 if state.connected else 0)
            repaired.add_metric([vm.name], state.audit.repaired if state.audit else 0)
        yield from (routes, neighbours, client, repaired)

        links = GaugeMetricFamily("routeflow_links", "Links discovered between switch ports")
        links.add_metric([], len(nib.links))
        yield links

        if self.stats is not None:
            yield from _controller_metrics(self.stats, names)


def _controller_metrics(stats: ControllerStats, names: dict[int, str]) -> Iterator[Metric]:
    dp_labels = ["dp_id", "dp_name"]
    packet_in = CounterMetricFamily("routeflow_packet_in", "Packet-ins from the datapath by reason (traffic kind)",
                                    labels=[*dp_labels, "reason"])
    for dpid, kinds in sorted(stats.packet_in_by_kind.items()):
        for kind, count in sorted(kinds.items()):
            packet_in.add_metric([f"{dpid:#x}", names.get(dpid, ""), kind], count)
    relayed = CounterMetricFamily("routeflow_slow_path_relayed",
                                  "Slow-path packets the controller sent out of the datapath (packet-outs)",
                                  labels=dp_labels)
    for dpid, count in sorted(stats.packet_out.items()):
        relayed.add_metric([f"{dpid:#x}", names.get(dpid, "")], count)
    dropped = CounterMetricFamily("routeflow_packet_in_dropped", "Packet-ins the controller could not relay",
                                  labels=dp_labels)
    for dpid, count in sorted(stats.dropped.items()):
        dropped.add_metric([f"{dpid:#x}", names.get(dpid, "")], count)
    refused = CounterMetricFamily("routeflow_dp_refused_connections",
                                  "Connections refused for claiming a live datapath's id", labels=dp_labels)
    for dpid, count in sorted(stats.refused.items()):
        refused.add_metric([f"{dpid:#x}", names.get(dpid, "")], count)
    yield from (packet_in, relayed, dropped, refused)
