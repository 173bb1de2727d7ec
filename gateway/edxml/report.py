"""The reader's validation report: every problem and every normalisation, each with a path."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


class IssueCode(enum.StrEnum):
    """Stable machine-readable codes; the gateway maps them onto its error vocabulary."""

    # Fatal: raised as typed errors, never returned in a report.
    XML_MALFORMED = "XML_MALFORMED"
    XML_FORBIDDEN = "XML_FORBIDDEN"
    ENCODING_UNSUPPORTED = "ENCODING_UNSUPPORTED"
    NOT_EDXML = "NOT_EDXML"
    NAMESPACE_UNSUPPORTED = "NAMESPACE_UNSUPPORTED"
    MESSAGE_TYPE_MISMATCH = "MESSAGE_TYPE_MISMATCH"
    XML_TOO_LARGE = "XML_TOO_LARGE"
    TOO_MANY_ELEMENTS = "TOO_MANY_ELEMENTS"
    TOO_DEEP = "TOO_DEEP"
    TOO_MANY_ATTACHMENTS = "TOO_MANY_ATTACHMENTS"
    ATTACHMENT_TOO_LARGE = "ATTACHMENT_TOO_LARGE"
    ATTACHMENTS_TOO_LARGE = "ATTACHMENTS_TOO_LARGE"
    # Problems.
    REQUIRED = "REQUIRED"
    TOO_LONG = "TOO_LONG"
    VALUE_INVALID = "VALUE_INVALID"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    DATE_INVALID = "DATE_INVALID"
    DATE_IN_FUTURE = "DATE_IN_FUTURE"
    DUE_DATE_BEFORE_PROMULGATION = "DUE_DATE_BEFORE_PROMULGATION"
    INVALID_CHARACTER = "INVALID_CHARACTER"
    ORGAN_ID_INVALID = "ORGAN_ID_INVALID"
    ORGAN_ID_NONSTANDARD = "ORGAN_ID_NONSTANDARD"
    RECIPIENT_MISSING = "RECIPIENT_MISSING"
    RECIPIENT_DUPLICATE = "RECIPIENT_DUPLICATE"
    CODE_NUMBER_INVALID = "CODE_NUMBER_INVALID"
    DOCUMENT_ID_MISSING = "DOCUMENT_ID_MISSING"
    DOCUMENT_ID_MISMATCH = "DOCUMENT_ID_MISMATCH"
    DOCUMENT_ID_INVALID = "DOCUMENT_ID_INVALID"
    SIGNER_MISSING = "SIGNER_MISSING"
    TRACE_HEADER_MISSING = "TRACE_HEADER_MISSING"
    BUSINESS_MISSING = "BUSINESS_MISSING"
    BUSINESS_REASON_MISSING = "BUSINESS_REASON_MISSING"
    BUSINESS_TARGET_MISSING = "BUSINESS_TARGET_MISSING"
    STATUS_CODE_INVALID = "STATUS_CODE_INVALID"
    STATUS_CODE_UNKNOWN = "STATUS_CODE_UNKNOWN"
    STATUS_REASON_MISSING = "STATUS_REASON_MISSING"
    ELEMENT_DUPLICATE = "ELEMENT_DUPLICATE"
    ELEMENT_UNKNOWN = "ELEMENT_UNKNOWN"
    ATTRIBUTE_IGNORED = "ATTRIBUTE_IGNORED"
    CONTENT_ID_DUPLICATE = "CONTENT_ID_DUPLICATE"
    ATTACHMENT_MISSING = "ATTACHMENT_MISSING"
    REFERENCE_MISSING = "REFERENCE_MISSING"
    ATTACHMENT_NONE = "ATTACHMENT_NONE"
    ATTACHMENT_CONTENT_TYPE = "ATTACHMENT_CONTENT_TYPE"
    ATTACHMENT_BASE64_INVALID = "ATTACHMENT_BASE64_INVALID"
    ATTACHMENT_ZIP_INVALID = "ATTACHMENT_ZIP_INVALID"
    ATTACHMENT_ZIP_ENTRIES = "ATTACHMENT_ZIP_ENTRIES"
    MANIFEST_VERSION = "MANIFEST_VERSION"
    # Normalisations: accepted, rewritten to the strict form, and reported.
    DATE_NORMALISED = "DATE_NORMALISED"
    TEXT_NORMALISED = "TEXT_NORMALISED"
    BOOLEAN_NORMALISED = "BOOLEAN_NORMALISED"
    CODE_NORMALISED = "CODE_NORMALISED"
    PREFIX_MISSING = "PREFIX_MISSING"
    PREFIX_NONSTANDARD = "PREFIX_NONSTANDARD"
    NAMESPACE_MISSING = "NAMESPACE_MISSING"
    NAMESPACE_FOREIGN = "NAMESPACE_FOREIGN"
    ALTERNATE_SPELLING = "ALTERNATE_SPELLING"
    SOAP_ATTRIBUTE_IGNORED = "SOAP_ATTRIBUTE_IGNORED"
    SIGNATURE_EMPTY = "SIGNATURE_EMPTY"
    ENCODING_NORMALISED = "ENCODING_NORMALISED"
    DOCUMENT_ID_COMPUTED = "DOCUMENT_ID_COMPUTED"
    BUSINESS_TYPE_ASSUMED = "BUSINESS_TYPE_ASSUMED"
    ATTACHMENT_NOT_ZIPPED = "ATTACHMENT_NOT_ZIPPED"
    ATTACHMENT_CONTENT_TYPE_NORMALISED = "ATTACHMENT_CONTENT_TYPE_NORMALISED"


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding. `path` names canonical elements from the block down, e.g.
    `MessageHeader/To[1]/OrganId` (repeatable elements always carry a 1-based index)."""

    code: IssueCode
    path: str
    severity: Severity
    message: str
    # True when the reader accepted a non-strict form and rewrote it (the value is kept).
    normalised: bool = False

    def __str__(self) -> str:
        return f"{self.severity} {self.code} at {self.path or '/'}: {self.message}"


@dataclass(frozen=True, slots=True)
class ValidationReport:
    issues: tuple[Issue, ...] = ()

    @classmethod
    def of(cls, issues: Iterable[Issue]) -> ValidationReport:
        return cls(tuple(issues))

    @property
    def ok(self) -> bool:
        """No errors (warnings and normalisations allowed)."""
        return not self.errors

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity is Severity.WARNING)

    @property
    def normalisations(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.normalised)

    @property
    def problems(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if not i.normalised)

    def codes(self) -> set[IssueCode]:
        return {i.code for i in self.issues}

    def at(self, path: str) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.path == path)
