"""How much an agency may keep uploaded without using it in a document (issue 17, finding 8).

An upload no document uses (the submission that was to use it was refused, or never came) is
deleted after DOCAXIS_UPLOAD_TTL_S by the upload sweeper; until then its bytes, and those
declared by the agency's unfinished uploads, count against the agency's quota
(DOCAXIS_UPLOAD_QUOTA_BYTES), so that no agency can fill the storage with content it never
sends. Content a document uses, and content the agency already holds, does not count.
"""

from __future__ import annotations

from services.common.errors import QuotaExceededError

# Enough for one document of 100 attachments of the default 256 MiB limit, and then some.
DEFAULT_UPLOAD_QUOTA_BYTES = 32 * 1024 * 1024 * 1024


class UploadQuotaExceededError(QuotaExceededError):
    reason = "UPLOAD_QUOTA_EXCEEDED"


def check_upload_quota(agency: str, unused_bytes: int, size: int, quota: int | None) -> None:
    """Raises UploadQuotaExceededError when `size` more bytes would take the agency's unused
    uploads (`unused_bytes`, the content being uploaded left out) past `quota` (None: none)."""
    if quota is not None and unused_bytes + size > quota:
        raise UploadQuotaExceededError(
            f"agency {agency} already holds {unused_bytes} bytes of uploads no document uses; "
            f"{size} more would exceed its quota of {quota}: submit or wait for them to expire",
            meta={"quota_bytes": str(quota), "unused_bytes": str(unused_bytes)},
        )
