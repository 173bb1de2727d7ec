"""Reading Postgres plans in tests that assert a statement's plan shape (EXPLAIN FORMAT JSON):
plans that depend on the statistics of young tables have gone wrong here before, and a plan's
shape is what such a test can check without timing anything."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, the root first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)
