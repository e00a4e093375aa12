"""Fixtures of the client's unit tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .support import GOLDEN, Build


@pytest.fixture
def build() -> type[Build]:
    return Build


def _load_dump(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text())
    data["datagrams"] = [bytes.fromhex(text) for text in data["messages"]]
    return data


def _load_events(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text())
    for step in data["steps"]:
        step["datagrams"] = [bytes.fromhex(text) for text in step["messages"]]
        step["route_dump_datagrams"] = [bytes.fromhex(text) for text in step.get("route_dump", [])]
    return data


#: The capture scenarios of ``tests/golden/netlink/capture.py``: (dump file, events file).
SCENARIOS = {
    "ipv4": ("dump.json", "events.json"),
    "ipv6": ("dump6.json", "events6.json"),
    "nexthop": ("dump-nexthop.json", "events-nexthop.json"),
}


@pytest.fixture(scope="session")
def golden_dump() -> dict[str, Any]:
    return _load_dump("dump.json")


@pytest.fixture(scope="session")
def golden_events() -> dict[str, Any]:
    return _load_events("events.json")


@pytest.fixture(scope="session", params=sorted(SCENARIOS))
def golden(request: pytest.FixtureRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each capture scenario in turn: (its dump, its events)."""
    dump, events = SCENARIOS[request.param]
    return _load_dump(dump), _load_events(events)
