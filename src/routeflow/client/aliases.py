"""The routes of one prefix as the kernel keeps them, and where a message puts them.

The kernel may hold several routes per prefix (different metrics, or ``ip
route append``), in an order its lookup depends on. IPv4 keeps them as fib
aliases, sorted by metric (``fib_table_insert``). IPv6 keeps one route per
next hop ("leg"), legs of equal metric that have a gateway forming one ECMP
route (``fib6_add_rt2node``); messages show them either as one route with
RTA_MULTIPATH (a multipath add, an append: the whole group) or, with older
semantics, as one message per leg with NLM_F_APPEND, and a delete names the
legs it removes. A route through a next-hop object is one leg whatever its
object holds (the kernel never merges those).

Pure: lists of :class:`~routeflow.client.netlink.KernelRoute` in, changed in place.
"""

from __future__ import annotations

from routeflow.client.netlink import NLM_F_APPEND, NLM_F_REPLACE, KernelRoute


def apply(routes: list[KernelRoute], route: KernelRoute, new: bool, flags: int) -> None:
    """Apply an RTM_NEWROUTE (``new``, with its nlmsg ``flags``) or an RTM_DELROUTE of
    ``route`` to the ``routes`` of its prefix, in the kernel's order. Idempotent, so
    that events already reflected in a dump can be replayed."""
    if ":" in route.prefix:
        if new:
            _insert_legs(routes, route, flags)
        else:  # a delete names the legs it removes (one, or the whole group)
            gone = {_leg_key(leg) for leg in kernel_routes(route)}
            routes[:] = [alias for alias in routes if _leg_key(alias) not in gone]
    elif new:
        _insert_alias(routes, route, flags)
    else:
        routes[:] = [alias for alias in routes if alias.identity != route.identity]


def kernel_routes(route: KernelRoute) -> list[KernelRoute]:
    """A route message as the kernel's routes: itself, but an IPv6 one with several
    next hops is one route per next hop (unless it goes through a next-hop object)."""
    if ":" not in route.prefix or len(route.nexthops) <= 1 or route.nhid:
        return [route]
    legs = zip(route.nexthops, route.dead, strict=True)
    return [route._replace(nexthops=(hop,), dead=(dead,)) for hop, dead in legs]


def ecmp_capable(leg: KernelRoute) -> bool:
    """Only IPv6 routes with a gateway and no next-hop object join ECMP groups
    (rt6_qualify_for_ecmp)."""
    return not leg.nhid and bool(leg.nexthops) and leg.nexthops[0].gateway is not None


def _insert_alias(aliases: list[KernelRoute], route: KernelRoute, flags: int) -> None:
    """Apply RTM_NEWROUTE to the aliases of one IPv4 prefix like ``fib_table_insert``."""
    if any(alias.identity == route.identity for alias in aliases):
        aliases[:] = [route if alias.identity == route.identity else alias for alias in aliases]
        return
    same = [i for i, alias in enumerate(aliases) if alias.priority == route.priority]
    if flags & NLM_F_REPLACE and same:
        aliases[same[0]] = route
    elif flags & NLM_F_APPEND and same:
        aliases.insert(same[-1] + 1, route)
    else:  # a new alias goes first among equals, and the list stays sorted by metric
        pos = same[0] if same else sum(1 for alias in aliases if alias.priority < route.priority)
        aliases.insert(pos, route)


def _leg_key(leg: KernelRoute) -> tuple[object, ...]:
    # What makes two IPv6 routes of a prefix the same for the kernel (rt6_duplicate_nexthop).
    if leg.nhid:
        return leg.priority, "nhid", leg.nhid
    hop = leg.nexthops[0] if leg.nexthops else None
    return leg.priority, hop.oif if hop else None, hop.gateway if hop else None


def _insert_legs(aliases: list[KernelRoute], route: KernelRoute, flags: int) -> None:
    """Apply an IPv6 RTM_NEWROUTE to the legs of one prefix like ``fib6_add_rt2node``.

    A known leg is refreshed in place, so the whole group an append reports,
    or a replayed event, changes nothing more."""
    legs = kernel_routes(route)
    if flags & NLM_F_REPLACE:
        # Replacing takes out the route of that metric and kind, with all its ECMP siblings.
        ecmp = ecmp_capable(legs[0])
        aliases[:] = [a for a in aliases if a.priority != route.priority or ecmp_capable(a) != ecmp]
    for n, leg in enumerate(legs):
        key = _leg_key(leg)
        index = next((i for i, alias in enumerate(aliases) if _leg_key(alias) == key), None)
        if index is not None:
            # A group message has the protocol of its first leg (the route notified):
            # the other legs keep their own.
            aliases[index] = leg if n == 0 else aliases[index]._replace(nexthops=leg.nexthops, dead=leg.dead)
        else:  # siblings and equal-metric routes go last among equals
            aliases.insert(sum(1 for alias in aliases if alias.priority <= leg.priority), leg)
