"""``value_record``: the class decorator of the per-request records (requests, Txns, entries, replies).

The records every request builds (a write builds about ten: its request, Txn, Entry, Stat,
reply...) are dataclasses with ``slots=True, unsafe_hash=True``, not ``frozen=True``: a frozen
dataclass's ``__init__`` sets each field through ``object.__setattr__`` (~70 ns a field, 8x a plain
slot store), which cost about 2 us of CPU per write. They are values all the same: equal and
hashable by their fields, and nothing assigns to a field after construction (the rule this
decorator's name states; the tests compare and hash them as values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(eq_default=True)
def value_record(cls: type[_T]) -> type[_T]:
    """A dataclass with slots, compared and hashed by its fields, never mutated (see the module)."""
    return dataclass(slots=True, unsafe_hash=True)(cls)


__all__ = ["value_record"]
