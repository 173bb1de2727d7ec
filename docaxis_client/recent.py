"""A bounded map of the values used last: what a process keeps of what never changes (a stored
document, its manifest digest, its delivery message; a certificate chain already validated), so
that each copy of a circular, or each document of one signer, does not read or build it again.
Not thread-safe: a caller shared by threads holds its own lock."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    """At most `kept` values by key; the least recently used is forgotten first."""

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._values: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._values.get(key)
        if value is not None:
            self._values.move_to_end(key)
        return value

    def __len__(self) -> int:
        return len(self._values)

    def put(self, key: K, value: V) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self._kept:
            self._values.popitem(last=False)
