"""Keeps a collection from running inside `ast.parse` on the Pythons whose AST constructor breaks
when it is re-entered (CPython gh-106905, fixed in 3.11.8 and 3.12.2).

Those versions count the AST constructor's recursion in one state per interpreter. A collection
that starts while `ast.parse` builds its tree runs finalizers and `gc.callbacks`, and one of them
may parse too: asyncio's `Future.__del__` logs an exception nobody retrieved, and 3.11's
traceback module parses the failing line's expression to place its carets. The inner parse leaves
the count at its own depth, and the outer one ends in `SystemError: AST constructor recursion
depth mismatch`. In the suite that parse is pytest's, formatting a failure: the session stopped
with INTERNALERROR instead of reporting the test as failed (three times in the tenth session).
With the collector paused for the length of each parse no finalizer can run inside it; the
garbage is collected at the next allocation after it.
"""

from __future__ import annotations

import ast
import functools
import gc
import sys
from collections.abc import Callable
from typing import Any

REENTRY_BUG = (3, 11) <= sys.version_info < (3, 11, 8) or (3, 12) <= sys.version_info < (3, 12, 2)


def _without_collection(parse: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(parse)
    def parse_without_collection(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return parse(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    parse_without_collection.__guarded__ = True  # type: ignore[attr-defined]
    return parse_without_collection


def guard_ast_construction() -> None:
    """Wraps `ast.parse` (once) where the interpreter has the bug: pytest's traceback formatting
    and the traceback module both call it through the module attribute."""
    if REENTRY_BUG and not getattr(ast.parse, "__guarded__", False):
        ast.parse = _without_collection(ast.parse)
