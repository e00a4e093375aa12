"""Errors routeflow reports to operators."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration or topology file is invalid.

    Carries every problem found, each naming the file, the field (a dotted
    path such as ``vms[1].interfaces[0].port``) and the reason.
    """

    def __init__(self, file: str, problems: list[tuple[str, str]]) -> None:
        self.file = file
        self.problems = problems
        super().__init__("\n".join(f"{file}: {field}: {reason}" for field, reason in problems))
