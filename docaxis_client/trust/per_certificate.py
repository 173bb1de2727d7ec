"""Values of pure functions of a certificate, kept by the certificate object itself.

A cryptography `Certificate` hashes by its whole parsed structure: about 8 µs a hash on the bench
machine, more than most of what was cached by it (`functools.lru_cache` hashed the certificate on
every hit; a document's verification made about a dozen such lookups). The certificates the hub
meets again are the very objects it keeps: `load_der_chain` answers a chain's bytes with the
objects it parsed first, and the hub's own identity is loaded once. So the object is the key: a
hit is that object (the entry holds it, so its id cannot be reused while it is kept); another
object of the same bytes is a miss, computed again and kept in turn. Thread-safe: verification
runs in threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from cryptography import x509

V = TypeVar("V")


class PerCertificate(Generic[V]):
    """`function` of a certificate, kept for the last `kept` certificate objects it was asked
    about (the oldest forgotten first). An exception is raised again on every call."""

    def __init__(self, function: Callable[[x509.Certificate], V], kept: int) -> None:
        self._function = function
        self._kept = kept
        self._values: dict[int, tuple[x509.Certificate, V]] = {}
        self._writing = threading.Lock()
        self.__doc__ = function.__doc__
        self.__name__ = function.__name__

    def __call__(self, certificate: x509.Certificate) -> V:
        entry = self._values.get(id(certificate))
        if entry is not None and entry[0] is certificate:
            return entry[1]
        value = self._function(certificate)
        with self._writing:
            self._values[id(certificate)] = (certificate, value)
            while len(self._values) > self._kept:
                del self._values[next(iter(self._values))]
        return value

    def __len__(self) -> int:
        return len(self._values)


def per_certificate(kept: int) -> Callable[[Callable[[x509.Certificate], V]], PerCertificate[V]]:
    """Decorates a pure function of a certificate (PerCertificate)."""

    def decorate(function: Callable[[x509.Certificate], V]) -> PerCertificate[V]:
        return PerCertificate(function, kept)

    return decorate
