"""One problem with one input field, as a google.rpc BadRequest names it.

Pure data, shared by the services (which report every bad field of a request at once) and the
client (which decodes them from a refusal), so that both speak of the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One problem with one input field; validation reports all of them at once."""

    field: str
    description: str
