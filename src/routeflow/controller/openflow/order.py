"""The send plan of a TableMod: which messages go in which order, and where barriers go.

Declared once, as data (as FAUCET's ``valve_of._OFMSG_ORDER``), and walked by
:func:`in_send_order` for both serialisers: the reference codec's os-ken
objects and the fast codec's bytes.

Groups are added and modified before the flows that may point at them and
deleted after the flows that did. A switch may reorder messages between
barriers, so a barrier ends each phase that sent anything, the last included.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from routeflow.protocol.messages import TableMod

_T = TypeVar("_T")


class Kind(enum.StrEnum):
    """A message a TableMod entry becomes."""

    GROUP_ADD = "group_add"
    GROUP_MODIFY = "group_modify"
    GROUP_DELETE = "group_delete"
    FLOW_ADD = "flow_add"
    FLOW_MODIFY = "flow_modify"
    FLOW_DELETE = "flow_delete"


@dataclass(frozen=True)
class Step:
    """The entries of one TableMod field, each sent as a message of one kind."""

    kind: Kind
    entries: Callable[[TableMod], Sequence[Any]]


def _step(kind: Kind, field: str) -> Step:
    return Step(kind, operator.attrgetter(field))


#: Phases in the order they are sent; each is ended by a barrier if it sent anything.
SEND_ORDER: tuple[tuple[Step, ...], ...] = (
    (_step(Kind.GROUP_ADD, "group_add"), _step(Kind.GROUP_MODIFY, "group_modify")),
    (_step(Kind.FLOW_ADD, "add"), _step(Kind.FLOW_MODIFY, "modify"), _step(Kind.FLOW_DELETE, "delete")),
    (_step(Kind.GROUP_DELETE, "group_delete"),),
)


def in_send_order(mod: TableMod, encoder: Callable[[Kind], Callable[[Any], _T]], barrier: Callable[[], _T],
                  errors: list[str], caught: tuple[type[Exception], ...]) -> Iterator[_T]:
    """The messages applying ``mod``, by :data:`SEND_ORDER`: ``encoder(kind)(entry)`` of each
    entry, and ``barrier()`` after each phase that sent anything.

    An entry whose encoding raises one of ``caught`` is left out and described in
    ``errors``: one bad entry must not cost the rest of the batch.
    """
    for phase in SEND_ORDER:
        sent = False
        for step in phase:
            encode = encoder(step.kind)  # once a step: the loop below is the hot path of a big change
            for entry in step.entries(mod):
                try:
                    message = encode(entry)
                except caught as exc:
                    errors.append(f"cannot encode {entry!r}: {exc}")
                    continue
                sent = True
                yield message
        if sent:
            yield barrier()
