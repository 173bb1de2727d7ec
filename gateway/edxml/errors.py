"""Typed edXML errors, each with a stable `reason` from the docaxis vocabulary (domain.md §8)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Self

from gateway.edxml.report import Issue, IssueCode, Severity


class EdxmlError(Exception):
    """Base of every edXML failure; `issues` says what, where and why, ready for a client."""

    reason: ClassVar[str] = "VALIDATION"
    # A fix-and-resend problem: sending the same bytes again cannot succeed.
    retryable: ClassVar[bool] = False

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(str(i) for i in self.issues) or self.reason)

    @classmethod
    def single(cls, code: IssueCode, message: str, path: str = "") -> Self:
        return cls((Issue(code, path, Severity.ERROR, message),))


class EdxmlValidationError(EdxmlError):
    """The package is not acceptable edXML (malformed, wrong shape, or failed validation)."""

    reason = "VALIDATION"


class UnsafeXmlError(EdxmlValidationError):
    """A DTD, entity declaration or external reference: refused before anything is resolved."""


class MalformedXmlError(EdxmlValidationError):
    """Not well-formed XML (or not in a usable encoding)."""


class EdxmlSizeLimitError(EdxmlError):
    """A configured bound (XML size, element count, attachments, decompressed bytes) was hit."""

    reason = "SIZE_LIMIT_EXCEEDED"

    def __init__(self, issues: Iterable[Issue], *, limit: int) -> None:
        super().__init__(issues)
        self.limit = limit


class UnsupportedVersionError(EdxmlError):
    """The root element is in a namespace this reader does not know (another edXML version)."""

    reason = "UNSUPPORTED_VERSION"

    def __init__(self, issues: Iterable[Issue], *, namespace: str) -> None:
        super().__init__(issues)
        self.namespace = namespace
