"""Every parser of outside bytes, over generated inputs: only typed refusals come out.

See tests/fuzz/harness.py for how many cases run where (`make test`: 5,000 per target, 1,000 for
those whose coverage 1,000 already saturates; `make fuzz`: 100,000) and where crashing inputs are
kept.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from tests.fuzz.harness import TARGET_NAMES_ENV, fuzz_settings, regression_cases, save_failure
from tests.fuzz.mutations import BYTE_EDITS, mutated
from tests.fuzz.targets import EDITS, TARGETS, seeds_of

_SELECTED = TARGET_NAMES_ENV or sorted(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_seed_of_each_target_is_accepted(name: str) -> None:
    """The fuzzing starts from inputs the parser accepts, so that the mutations reach past its
    first check: at least one seed goes through without any refusal."""
    errors: list[BaseException] = []
    for seed in seeds_of(name):
        try:
            TARGETS[name].parse(seed)
        except Exception as exc:  # noqa: BLE001 - collected to show why no seed passed
            errors.append(exc)
        else:
            return
    pytest.fail(f"no seed of {name} is accepted: {errors!r}")


@pytest.mark.parametrize("name", _SELECTED)
def test_only_typed_refusals_come_out(name: str) -> None:
    """Stored crashing inputs first, then generated ones: each is parsed or refused with one
    of the target's typed errors; anything else fails and keeps its input as a regression."""
    target = TARGETS[name]
    for stored_name, path in regression_cases():
        if stored_name == name:
            target.run(path.read_bytes())

    @fuzz_settings(name)
    @given(mutated(seeds_of(name), EDITS.get(name, BYTE_EDITS)))
    def fuzz(data: bytes) -> None:
        target.run(data)

    try:
        fuzz()
    finally:
        saved = save_failure(name)
        if saved is not None:
            print(f"crashing input kept as {saved}")  # noqa: T201 - shown with the failure
