"""What a recipient keeps of a copy its sender withdrew: the rules every adapter and use case
applies (README, "Recalled copies").

A copy is withdrawn (DeliveryState.WITHDRAWN) when it was recalled before its recipient
acknowledged it (RecallState.WITHDRAWN_BEFORE_RECEIPT), or when the recipient agreed to a recall
(15) of a copy it had received.

- Withdrawn before receipt: the recipient never legitimately had it, so it is as invisible to
  the recipient as a document never sent to it (NOT_FOUND on every read), it cannot be
  acknowledged (COPY_WITHDRAWN), and no transport receipt ever exists for it.
- Withdrawn after receipt: the recipient keeps what it legitimately has, the document's identity
  and its own copy's status history (and the transport receipt issued when it acknowledged),
  but no longer its content: no subject, body or attachments, no links to other documents.
- The sender keeps seeing every copy of what it sent, withdrawn or not.
"""

from __future__ import annotations

import datetime as dt
import enum

from services.common.errors import RejectedError
from services.exchange.domain.model import DeliveryState, Header


class CopyWithdrawnError(RejectedError):
    """The copy was withdrawn by a recall: nothing is left to acknowledge."""

    reason = "COPY_WITHDRAWN"


class Sight(enum.Enum):
    """How much of a copy its recipient sees."""

    FULL = "full"
    HISTORY = "history"  # withdrawn after receipt: identity and its own status history
    NONE = "none"  # withdrawn before receipt: as if never sent to it


def recipient_sight(state: DeliveryState, acknowledged_at: dt.datetime | None) -> Sight:
    if state is not DeliveryState.WITHDRAWN:
        return Sight.FULL
    return Sight.HISTORY if acknowledged_at is not None else Sight.NONE


def check_acknowledgeable(delivery_id: str, state: DeliveryState) -> None:
    """Raises CopyWithdrawnError for a withdrawn copy. Decided under the copy's row lock, so
    that an acknowledgement racing a recall either lands first (and the recall asks the
    recipient) or is refused."""
    if state is DeliveryState.WITHDRAWN:
        raise CopyWithdrawnError(
            f"delivery {delivery_id} was withdrawn by its sender",
            meta={"delivery_id": delivery_id},
        )


def identity_only(header: Header, recipient: str) -> Header:
    """What a recipient keeps of a header after its copy was withdrawn: the fields that make up
    the DocumentId and the document's kind, addressed to itself alone."""
    return Header(
        sender=header.sender,
        recipients=(recipient,),
        code_number=header.code_number,
        code_notation=header.code_notation,
        promulgation_date=header.promulgation_date,
        subject="",
        business_type=header.business_type,
    )
