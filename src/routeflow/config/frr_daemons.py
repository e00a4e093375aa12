"""Which FRR daemon reads which statement of an ``engine_config``.

routeflow starts zebra and the daemons a VM lists; a statement for a daemon not
started is silently ignored by FRR (a ``router bgp`` without bgpd: no BGP at all),
so the config loader refuses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from routeflow.config.safe_yaml import shown
from routeflow.config.schema import FRR_DAEMONS

#: FRR statements, by their first words (None: any word), and the daemon that reads them.
#: zebra, which routeflow always starts, reads the rest (interfaces, prefix lists, route maps).
STATEMENT_DAEMONS: tuple[tuple[tuple[str | None, ...], str], ...] = (
    (("router", "bgp"), "bgpd"),
    (("router", "ospf"), "ospfd"),
    (("ip", "ospf"), "ospfd"),
    (("router", "ospf6"), "ospf6d"),
    (("ipv6", "ospf6"), "ospf6d"),
    (("router", "rip"), "ripd"),
    (("ip", "rip"), "ripd"),
    (("ip", "route"), "staticd"),
    (("ipv6", "route"), "staticd"),
    (("bfd",), "bfdd"),
    (("neighbor", None, "bfd"), "bfdd"),
    (("ip", "ospf", "bfd"), "bfdd"),
    (("ipv6", "ospf6", "bfd"), "bfdd"),
    # Daemons routeflow does not run: their statements would be ignored.
    (("router", "ripng"), "ripngd"),
    (("router", "isis"), "isisd"),
    (("router", "eigrp"), "eigrpd"),
    (("router", "babel"), "babeld"),
    (("router", "openfabric"), "fabricd"),
    (("mpls", "ldp"), "ldpd"),
)


def frr_statements(engine_config: str) -> Iterator[tuple[int, str]]:
    """Each statement of an FRR config with its line number (1-based); not comments or blank lines."""
    for number, line in enumerate(engine_config.splitlines(), 1):
        text = line.strip()
        if text and text[0] not in "!#":
            yield number, text


def needed_daemons(engine_config: str) -> dict[str, tuple[int, str]]:
    """The FRR daemons ``engine_config`` needs, each with the first statement (line, text) needing it."""
    needed: dict[str, tuple[int, str]] = {}
    for number, text in frr_statements(engine_config):
        words = text.split()
        for pattern, daemon in STATEMENT_DAEMONS:
            if len(words) >= len(pattern) and all(p in (None, w) for p, w in zip(pattern, words)):
                needed.setdefault(daemon, (number, text))
    return needed


def daemon_problems(daemons: Sequence[str], engine_config: str) -> Iterator[tuple[str, str]]:
    """``(key, reason)`` for each daemon ``engine_config`` needs that is not in ``daemons``
    (key ``daemons``) or that routeflow does not run (key ``engine_config``)."""
    for daemon, (number, text) in needed_daemons(engine_config).items():
        where = f"{shown(text)} (engine_config line {number})"
        if daemon not in FRR_DAEMONS:
            yield "engine_config", (f"{where} needs {daemon}, which routeflow does not run "
                                    f"(it runs zebra and {', '.join(FRR_DAEMONS)})")
        elif daemon not in daemons:
            yield "daemons", f"{where} needs {daemon}: add it to daemons"
