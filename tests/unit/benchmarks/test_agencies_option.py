"""`python -m benchmarks --agencies SENDERS,RECIPIENTS`: parsed, and refused when it cannot run."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.__main__ import _agencies


def test_senders_and_recipients_are_read_in_that_order() -> None:
    assert _agencies("8,16") == (8, 16)


@pytest.mark.parametrize("text", ["8", "8,16,2", "a,b", "0,4", "4,1", "101,4"])
def test_what_cannot_run_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _agencies(text)
