"""Progress of long transfers, for the application to show as it likes: the SDK prints nothing.

A `BytesDone` hook is called with the bytes of a transfer done so far: an absolute count, since
a resumed transfer goes on from what docaxis had committed (which can be less than was sent).
"""

from __future__ import annotations

from collections.abc import Callable

BytesDone = Callable[[int], None]


def ignore_progress(_done: int) -> None:
    """The hook of a caller that shows no progress."""
