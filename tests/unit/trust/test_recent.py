"""The bounded map of recently used values that the document caches share."""

from __future__ import annotations

from docaxis_client.recent import Recent


def test_the_least_recently_used_is_forgotten_first() -> None:
    recent: Recent[str, int] = Recent(kept=2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # "a" used: now "b" is the least recently used
    recent.put("c", 3)
    assert recent.get("b") is None
    assert (recent.get("a"), recent.get("c")) == (1, 3)
