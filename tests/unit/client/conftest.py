"""Fixtures of the client's unit tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .support import GOLDEN, Build, parse_hex


@pytest.fixture
def build() -> type[Build]:
    return Build


@pytest.fixture(scope="session")
def golden_dump() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / "dump.json").read_text())
    data["parsed"] = parse_hex(data["messages"])
    return data


@pytest.fixture(scope="session")
def golden_events() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / "events.json").read_text())
    for step in data["steps"]:
        step["parsed"] = parse_hex(step["messages"])
        step["parsed_dump"] = parse_hex(step.get("route_dump", []))
    return data
