"""Checking the problems a config or topology error reports, field by field."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from routeflow.errors import ConfigError


def problems(parse: Callable[[object, str], object], document: object, file: str) -> dict[str, str]:
    """The problems ``parse`` reports for ``document`` read from ``file``, by field path.

    Fails the test unless it raises ConfigError naming ``file`` on every line.
    """
    with pytest.raises(ConfigError) as info:
        parse(document, file)
    assert info.value.file == file
    assert all(line.startswith(f"{file}: ") for line in str(info.value).splitlines())
    return dict(info.value.problems)


def assert_reported(found: Mapping[str, str], expected: Mapping[str, str]) -> None:
    """Each field of ``expected`` is reported with a reason that contains the given text."""
    wrong = {field: found.get(field) for field, text in expected.items() if text not in found.get(field, "")}
    assert not wrong, f"not reported as expected: {wrong}\nall reported: {dict(found)}"
