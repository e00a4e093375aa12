"""Hypothesis strategies the targets share: byte mutations of seeds, values of msgspec
types (honouring their constraints), and loose msgpack documents.

Mutations are drawn as hypothesis choices (which operation, where, what value), so a
failing input shrinks towards its seed with the fewest, smallest changes.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

#: (offset, width, byte order) of a length or count field in a seed: a mutation
#: rewrites these far more often than it hits them by chance.
LengthField = tuple[int, int, str]

_INTERESTING = (0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def _set_int(data: bytearray, offset: int, width: int, order: str, value: int) -> None:
    if 0 <= offset and offset + width <= len(data):
        data[offset:offset + width] = (value % (1 << 8 * width)).to_bytes(width, order)  # type: ignore[arg-type]


@st.composite
def _mutant(draw: Any, seeds: Sequence[bytes], fields: Callable[[bytes], list[LengthField]] | None,
            orders: tuple[str, ...], tokens: Sequence[bytes], max_ops: int) -> bytes:
    seed = draw(st.sampled_from(seeds))
    data = bytearray(seed)
    hot = fields(seed) if fields is not None else []
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.integers(0, 9))
        size = len(data)
        if op == 0 and hot:  # a length field: zero, off by a little, huge, random
            offset, width, order = draw(st.sampled_from(hot))
            old = int.from_bytes(data[offset:offset + width], order) if offset + width <= size else 0  # type: ignore[arg-type]
            delta = draw(st.sampled_from((-1, 1, -4, 4, -8, 8, -2, 2, 16, -16)))
            value = draw(st.one_of(st.sampled_from(_INTERESTING), st.just(old + delta), st.just(old * 2),
                                   st.integers(0, (1 << 8 * width) - 1)))
            _set_int(data, offset, width, order, value)
        elif op in (0, 1) and size:  # flip a bit
            i = draw(st.integers(0, size - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 2 and size:  # set a byte
            i = draw(st.integers(0, size - 1))
            data[i] = draw(st.one_of(st.sampled_from((0, 1, 0x7F, 0x80, 0xFF)), st.integers(0, 255)))
        elif op == 3 and size:  # an interesting integer anywhere
            width = draw(st.sampled_from((1, 2, 4, 8)))
            i = draw(st.integers(0, size - 1))
            _set_int(data, i, width, draw(st.sampled_from(orders)), draw(st.sampled_from(_INTERESTING)))
        elif op == 4:  # insert bytes (or a token)
            i = draw(st.integers(0, size))
            chunk = draw(st.sampled_from(tokens)) if tokens and draw(st.booleans()) else draw(
                st.binary(min_size=1, max_size=16))
            data[i:i] = chunk
        elif op == 5 and size:  # delete a span
            i = draw(st.integers(0, size - 1))
            del data[i:i + draw(st.sampled_from((1, 2, 4, 8, 16, 64)))]
        elif op == 6:  # cut
            del data[draw(st.integers(0, size)):]
        elif op == 7 and size:  # duplicate a span elsewhere
            i = draw(st.integers(0, size - 1))
            span = data[i:i + draw(st.integers(1, 64))]
            j = draw(st.integers(0, size))
            data[j:j] = span
        elif op == 8:  # splice with another seed
            other = draw(st.sampled_from(seeds))
            data = data[:draw(st.integers(0, size))] + other[draw(st.integers(0, len(other))):]
        elif op == 9:  # append junk
            data += draw(st.binary(min_size=1, max_size=32))
    return bytes(data)


def mutated(seeds: Sequence[bytes], fields: Callable[[bytes], list[LengthField]] | None = None,
            orders: tuple[str, ...] = ("big", "little"), tokens: Sequence[bytes] = (),
            max_ops: int = 4) -> st.SearchStrategy[bytes]:
    """Seeds with one to ``max_ops`` mutations (``fields`` names a seed's length fields)."""
    seeds = [bytes(s) for s in seeds if s]
    return _mutant(seeds, fields, orders, tuple(tokens), max_ops)


# -- values of msgspec types ------------------------------------------------------------------

INT64_MIN, UINT64_MAX = -(1 << 63), (1 << 64) - 1

#: Any integer msgpack can carry, small and boundary values first.
any_int = st.one_of(st.integers(0, 8), st.sampled_from((INT64_MIN, -1, 0xFFFF, 0xFFFFFFFF, 0xFFFFFF00, 1 << 63,
                                                         UINT64_MAX)),
                    st.integers(INT64_MIN, UINT64_MAX))


def msgpack_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Anything msgpack encodes: the raw material of loose messages and documents."""
    scalars = st.one_of(st.none(), st.booleans(), any_int, st.floats(), st.text(max_size=24),
                        st.binary(max_size=24))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=12), any_int), inner, max_size=4)),
        max_leaves=max_leaves)


Hints = dict[str, st.SearchStrategy[Any]]


def for_type(info: Any, by_field: Hints | None = None, by_pattern: Hints | None = None,
             field_name: str = "", max_items: int = 4) -> st.SearchStrategy[Any]:
    """A strategy of values of a ``msgspec.inspect`` type that its decoder accepts.

    ``by_field`` overrides scalar fields by name (a ``dpid`` drawn mostly from the
    configured ones) and any field by ``Class.field``; ``by_pattern`` overrides string
    fields by their pattern (an ``IfName`` drawn mostly from the configured interface names)."""
    by_field = by_field or {}
    by_pattern = by_pattern or {}

    def of(t: Any, name: str = "") -> st.SearchStrategy[Any]:
        return for_type(t, by_field, by_pattern, name, max_items)

    scalar = isinstance(info, (mi.IntType, mi.StrType, mi.FloatType))
    if scalar and field_name in by_field and "." not in field_name:
        return by_field[field_name]
    if isinstance(info, mi.IntType):
        lo = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else None)
        hi = info.le if info.le is not None else (info.lt - 1 if info.lt is not None else None)
        if lo is None and hi is None:
            return any_int
        return st.integers(INT64_MIN if lo is None else lo, UINT64_MAX if hi is None else hi)
    if isinstance(info, mi.FloatType):
        low = info.ge if info.ge is not None else info.gt
        high = info.le if info.le is not None else info.lt
        return st.floats(min_value=low, max_value=high, exclude_min=info.gt is not None,
                         exclude_max=info.lt is not None, allow_nan=low is None and high is None)
    if isinstance(info, mi.StrType):
        if info.pattern is not None:
            if info.pattern in by_pattern:
                return by_pattern[info.pattern]
            text = st.from_regex(info.pattern, fullmatch=True)
        else:
            text = st.text(max_size=20)
        if info.min_length is not None or info.max_length is not None:
            shortest, longest = info.min_length or 0, info.max_length if info.max_length is not None else 1 << 30

            def fits(text: str) -> bool:
                return shortest <= len(text) <= longest

            text = text.filter(fits) if info.pattern else st.text(min_size=shortest,
                                                                  max_size=min(longest, shortest + 20))
        return text
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.UnionType):
        return st.one_of(*(of(t, field_name) for t in info.types))
    if isinstance(info, mi.TupleType):
        return st.tuples(*(of(t) for t in info.item_types))
    if isinstance(info, (mi.VarTupleType, mi.ListType)):
        hi = max_items if info.max_length is None else min(info.max_length, max_items)
        items = st.lists(of(info.item_type, field_name), min_size=info.min_length or 0, max_size=hi)
        return items.map(tuple) if isinstance(info, mi.VarTupleType) else items
    if isinstance(info, mi.DictType):
        return st.dictionaries(of(info.key_type), of(info.value_type), max_size=max_items)
    if isinstance(info, mi.StructType):
        fields = {f.name: _field_strategy(info, f, by_field, of) for f in info.fields}
        return st.fixed_dictionaries(fields).map(lambda kw: info.cls(**kw))
    if isinstance(info, mi.AnyType):
        return msgpack_values()
    raise TypeError(f"no strategy for {info!r}")


def messages_of(types: Sequence[type[msgspec.Struct]], by_field: Hints | None = None,
                by_pattern: Hints | None = None) -> st.SearchStrategy[Any]:
    """Well-typed messages of any of ``types``."""
    return st.one_of(*(for_type(mi.type_info(t), by_field, by_pattern) for t in types))


def loose_messages(types: Sequence[type[msgspec.Struct]], typed: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """msgpack documents shaped like messages of ``types`` (their tag, their field names) with
    any values, fields left out or added: what a broken or hostile peer sends."""
    infos = [typing.cast(mi.StructType, mi.type_info(t)) for t in types]
    tags = [info.tag for info in infos]
    names = sorted({f.name for info in infos for f in info.fields})

    @st.composite
    def loose(draw: Any) -> bytes:
        base = msgspec.to_builtins(draw(typed))
        assert isinstance(base, dict)
        for key in list(base):
            if key != "type" and draw(st.integers(0, 3)) == 0:
                choice = draw(st.integers(0, 2))
                if choice == 0:
                    del base[key]
                else:
                    base[key] = draw(msgpack_values(6))
        if draw(st.integers(0, 5)) == 0:
            base["type"] = draw(st.one_of(st.sampled_from(tags), st.text(max_size=12), any_int))
        if draw(st.integers(0, 5)) == 0:
            base[draw(st.one_of(st.sampled_from(names), st.text(max_size=8)))] = draw(msgpack_values(6))
        return msgspec.msgpack.encode(base)

    return loose()


def _field_strategy(info: Any, f: Any, by_field: Hints, of: Callable[[Any, str], st.SearchStrategy[Any]]
                    ) -> st.SearchStrategy[Any]:
    hint = by_field.get(f"{info.cls.__name__}.{f.name}")
    return hint if hint is not None else of(f.type, f.name)
