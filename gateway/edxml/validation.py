"""Field rules of QCVN 102 / Nghị định 30 (domain.md §2.2, §4, §5) over a package model."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterator, Mapping
from typing import Final

from gateway.edxml.dates import vietnam_today
from gateway.edxml.mapping import (
    DocumentIdError,
    compose_document_id,
    normalise,
    parse_document_id,
)
from gateway.edxml.model import (
    Business,
    BusinessDocType,
    BusinessDocumentInfo,
    DocumentPackage,
    MessageHeader,
    Organisation,
    StatusPackage,
    TraceHeaderList,
    bare_content_id,
)
from gateway.edxml.names import ZIP_CONTENT_TYPE
from gateway.edxml.report import Issue, IssueCode, Severity

MAX_ORGAN_ID: Final = 35
MAX_ORGAN_NAME: Final = 200
MAX_CODE_NUMBER: Final = 11
MAX_CODE_NOTATION: Final = 30
MAX_PLACE: Final = 200
MAX_TYPE_NAME: Final = 100
MAX_SUBJECT: Final = 500
MAX_SIGNER_POSITION: Final = 100
MAX_SIGNER_NAME: Final = 50
MAX_TO_PLACES_TOTAL: Final = 1000
MAX_SPHERE: Final = 100
MAX_TYPER_NOTATION: Final = 10
MAX_STATUS_DESCRIPTION: Final = 1000
PRIORITY_RANGE: Final = range(5)
# Codes seen in the field (domain.md §4); others are passed on with a warning.
KNOWN_STATUS_CODES: Final = frozenset({"01", "02", "03", "04", "05", "06", "13", "15", "16"})
REFUSED: Final = "02"

# Hard shape: what can be routed and put into a DocumentId (no comma, no space, bounded).
_ORGAN_ID = re.compile(r"[0-9A-Za-z._-]+")
# QĐ 20/2020 generic identifiers (the 13-character QCVN form is one of them).
_ORGAN_ID_STANDARD = re.compile(r"[0-9A-Z.]+")
_STATUS_CODE = re.compile(r"[0-9]{2}")


def _error(code: IssueCode, path: str, message: str) -> Issue:
    return Issue(code, path, Severity.ERROR, message)


def _warning(code: IssueCode, path: str, message: str) -> Issue:
    return Issue(code, path, Severity.WARNING, message)


def _length(value: str, limit: int, path: str) -> Iterator[Issue]:
    if len(value) > limit:
        yield _error(IssueCode.TOO_LONG, path, f"{len(value)} characters, at most {limit}")


def _required(value: object, path: str, what: str, skip: Collection[str]) -> Iterator[Issue]:
    if value in ("", None) and path not in skip:
        yield _error(IssueCode.REQUIRED, path, f"{what} is required")


def check_organ_id(value: str, path: str, *, strict: bool = True) -> Iterator[Issue]:
    """Shape of an agency code; the directory decides whether it exists.

    `strict` (From/To) makes a bad shape an error; elsewhere (trace, business) it is a warning,
    since those codes are informative and real hubs write placeholders such as "null".
    """
    if not value:
        return
    if len(value) > MAX_ORGAN_ID or _ORGAN_ID.fullmatch(value) is None:
        message = f"{value!r} is not an agency code (at most {MAX_ORGAN_ID} of [0-9A-Za-z._-])"
        yield (_error if strict else _warning)(IssueCode.ORGAN_ID_INVALID, path, message)
    elif _ORGAN_ID_STANDARD.fullmatch(value) is None:
        yield _warning(IssueCode.ORGAN_ID_NONSTANDARD, path, f"{value!r} is not in QĐ 20 form")


def _organisation(
    org: Organisation, path: str, skip: Collection[str], *, what: str
) -> Iterator[Issue]:
    yield from _required(org.organ_id, f"{path}/OrganId", f"{what} OrganId", skip)
    yield from check_organ_id(org.organ_id, f"{path}/OrganId")
    yield from _length(org.organ_name, MAX_ORGAN_NAME, f"{path}/OrganName")


def _document_id(value: str, path: str) -> Iterator[Issue]:
    if not value:
        return
    try:
        parse_document_id(value)
    except DocumentIdError as exc:
        yield _warning(IssueCode.DOCUMENT_ID_INVALID, path, str(exc))


def check_document(
    package: DocumentPackage, *, now: dt.datetime | None = None, skip: Collection[str] = ()
) -> list[Issue]:
    """Every rule a document package breaks. `skip` holds paths already reported as unreadable,
    so a bad value is not reported a second time as missing."""
    return [
        *_header(package, now, skip),
        *_trace(package, skip),
        *_body(package),
    ]


def _header(
    package: DocumentPackage, now: dt.datetime | None, skip: Collection[str]
) -> Iterator[Issue]:
    for part in (_addresses, _code, _promulgation, _signer_and_dates, _other_info, _responses):
        yield from part(package.header, now, skip)
    yield from _header_document_id(package)


def _addresses(
    header: MessageHeader, now: dt.datetime | None, skip: Collection[str]
) -> Iterator[Issue]:
    base = "MessageHeader"
    yield from _organisation(header.sender, f"{base}/From", skip, what="the sender's")
    if not header.recipients:
        yield _error(IssueCode.RECIPIENT_MISSING, f"{base}/To", "at least one To is required")
    seen: dict[str, int] = {}
    for index, recipient in enumerate(header.recipients, 1):
        path = f"{base}/To[{index}]"
        yield from _organisation(recipient, path, skip, what="each recipient's")
        if recipient.organ_id in seen:
            first = seen[recipient.organ_id]
            yield _error(
                IssueCode.RECIPIENT_DUPLICATE,
                f"{path}/OrganId",
                f"{recipient.organ_id!r} is already To[{first}]",
            )
        elif recipient.organ_id:
            seen[recipient.organ_id] = index


def _code(header: MessageHeader, now: dt.datetime | None, skip: Collection[str]) -> Iterator[Issue]:
    base = "MessageHeader"
    code = header.code
    yield from _required(code.number, f"{base}/Code/CodeNumber", "CodeNumber", skip)
    yield from _length(code.number, MAX_CODE_NUMBER, f"{base}/Code/CodeNumber")
    if "/" in code.number:
        # The DocumentId splits number and notation at the first slash (domain.md §3).
        yield _error(IssueCode.CODE_NUMBER_INVALID, f"{base}/Code/CodeNumber", "contains '/'")
    yield from _required(code.notation, f"{base}/Code/CodeNotation", "CodeNotation", skip)
    yield from _length(code.notation, MAX_CODE_NOTATION, f"{base}/Code/CodeNotation")


def _promulgation(
    header: MessageHeader, now: dt.datetime | None, skip: Collection[str]
) -> Iterator[Issue]:
    base = "MessageHeader"
    promulgation = header.promulgation
    date_path = f"{base}/PromulgationInfo/PromulgationDate"
    yield from _required(promulgation.date, date_path, "PromulgationDate", skip)
    if promulgation.date is not None and promulgation.date > vietnam_today(now):
        yield _error(IssueCode.DATE_IN_FUTURE, date_path, f"{promulgation.date} is in the future")
    yield from _length(promulgation.place, MAX_PLACE, f"{base}/PromulgationInfo/Place")
    type_path = f"{base}/DocumentType/Type"
    yield from _required(header.document_type.type_code, type_path, "DocumentType/Type", skip)
    yield from _length(
        header.document_type.type_name, MAX_TYPE_NAME, f"{base}/DocumentType/TypeName"
    )
    yield from _required(header.subject, f"{base}/Subject", "Subject", skip)
    yield from _length(header.subject, MAX_SUBJECT, f"{base}/Subject")


def _signer_and_dates(
    header: MessageHeader, now: dt.datetime | None, skip: Collection[str]
) -> Iterator[Issue]:
    base = "MessageHeader"
    promulgation = header.promulgation
    if header.signer is None:
        yield _warning(IssueCode.SIGNER_MISSING, f"{base}/SignerInfo", "no SignerInfo")
    else:
        yield from _length(
            header.signer.position, MAX_SIGNER_POSITION, f"{base}/SignerInfo/Position"
        )
        yield from _length(header.signer.full_name, MAX_SIGNER_NAME, f"{base}/SignerInfo/FullName")
    due = header.due_date
    if due is not None and promulgation.date is not None and due < promulgation.date:
        yield _warning(
            IssueCode.DUE_DATE_BEFORE_PROMULGATION,
            f"{base}/DueDate",
            f"{due} is before the promulgation date {promulgation.date}",
        )
    total = sum(len(place) for place in header.to_places)
    if total > MAX_TO_PLACES_TOTAL:
        yield _error(
            IssueCode.TOO_LONG, f"{base}/ToPlaces", f"{total} characters, at most 1000 in total"
        )


def _other_info(
    header: MessageHeader, now: dt.datetime | None, skip: Collection[str]
) -> Iterator[Issue]:
    base = "MessageHeader"
    other = header.other_info
    if other is None:
        return
    path = f"{base}/OtherInfo"
    if other.priority is not None and other.priority not in PRIORITY_RANGE:
        yield _error(IssueCode.OUT_OF_RANGE, f"{path}/Priority", f"{other.priority} not in 0..4")
    yield from _length(other.sphere_of_promulgation, MAX_SPHERE, f"{path}/SphereOfPromulgation")
    yield from _length(other.typer_notation, MAX_TYPER_NOTATION, f"{path}/TyperNotation")
    for name, amount in (
        ("PromulgationAmount", other.promulgation_amount),
        ("PageAmount", other.page_amount),
    ):
        if amount is not None and amount < 0:
            yield _error(IssueCode.OUT_OF_RANGE, f"{path}/{name}", f"{amount} is negative")


def _responses(
    header: MessageHeader, now: dt.datetime | None, skip: Collection[str]
) -> Iterator[Issue]:
    base = "MessageHeader"
    for index, response in enumerate(header.response_for, 1):
        path = f"{base}/ResponseFor[{index}]"
        yield from check_organ_id(response.organ_id, f"{path}/OrganId", strict=False)
        yield from _document_id(response.document_id, f"{path}/DocumentId")


def _header_document_id(package: DocumentPackage) -> Iterator[Issue]:
    header = package.header
    path = "MessageHeader/DocumentId"
    composed = None
    if header.sender.organ_id and header.promulgation.date and header.code.number:
        composed = compose_document_id(
            header.sender.organ_id,
            header.promulgation.date,
            header.code.number,
            header.code.notation,
        )
    if not header.document_id:
        yield _warning(IssueCode.DOCUMENT_ID_MISSING, path, "no DocumentId")
    elif composed is not None and normalise(header.document_id) == composed:
        return
    elif composed is not None:
        # Kept as sent: statuses and recalls from the sender's side will quote this value.
        yield _warning(
            IssueCode.DOCUMENT_ID_MISMATCH,
            path,
            f"{header.document_id!r} differs from {composed!r} (From, date and Code)",
        )


# The standard's spelling, always.
_BUSINESS: Final = "TraceHeaderList/Bussiness"


def _trace(package: DocumentPackage, skip: Collection[str]) -> Iterator[Issue]:
    yield from _trace_headers(package.trace, skip)
    business = package.trace.business
    path = _BUSINESS
    if business is None:
        yield _warning(IssueCode.BUSINESS_MISSING, path, "no Bussiness block: a new document")
        return
    if business.doc_type is None and f"{path}/BussinessDocType" not in skip:
        yield _error(IssueCode.VALUE_INVALID, f"{path}/BussinessDocType", "not 0, 1, 2 or 3")
    yield from _document_id(business.document_id, f"{path}/DocumentId")
    if business.paper is not None and business.paper not in (0, 1):
        yield _warning(IssueCode.OUT_OF_RANGE, f"{path}/Paper", f"{business.paper} not 0 or 1")
    kind = business.doc_type
    if kind is BusinessDocType.REVOKE:
        yield from _revoke(business, bool(business.document_id or package.header.response_for))
    elif kind is BusinessDocType.UPDATE:
        yield from _update(business)
    elif kind is BusinessDocType.REPLACE:
        yield from _replace(business, skip)
    if business.document_info is not None:
        yield from _business_receivers(business.document_info)


def _trace_headers(trace: TraceHeaderList, skip: Collection[str]) -> Iterator[Issue]:
    base = "TraceHeaderList"
    if not trace.trace_headers:
        yield _warning(IssueCode.TRACE_HEADER_MISSING, base, "no TraceHeader")
    for index, header in enumerate(trace.trace_headers, 1):
        path = f"{base}/TraceHeader[{index}]"
        if not header.organ_id:
            yield _warning(IssueCode.REQUIRED, f"{path}/OrganId", "TraceHeader without OrganId")
        yield from check_organ_id(header.organ_id, f"{path}/OrganId", strict=False)
        if header.timestamp is None and f"{path}/Timestamp" not in skip:
            yield _warning(IssueCode.REQUIRED, f"{path}/Timestamp", "TraceHeader without Timestamp")


def _revoke(business: Business, has_target: bool) -> Iterator[Issue]:
    path = _BUSINESS
    if not business.reason:
        yield _warning(
            IssueCode.BUSINESS_REASON_MISSING, f"{path}/BussinessDocReason", "no recall reason"
        )
    if not has_target:
        yield _warning(
            IssueCode.BUSINESS_TARGET_MISSING,
            f"{path}/DocumentId",
            "a recall names no original: the package's own DocumentId is taken",
        )


def _update(business: Business) -> Iterator[Issue]:
    path = _BUSINESS
    if not business.document_id:
        yield _error(
            IssueCode.BUSINESS_TARGET_MISSING,
            f"{path}/DocumentId",
            "an update must name the original document",
        )
    if business.document_info is None:
        yield _warning(
            IssueCode.REQUIRED,
            f"{path}/BussinessDocumentInfo",
            "an update should say what changed",
        )


def _replace(business: Business, skip: Collection[str]) -> Iterator[Issue]:
    path = _BUSINESS
    if not business.replacements:
        yield _error(
            IssueCode.BUSINESS_TARGET_MISSING,
            f"{path}/ReplacementInfoList",
            "a replacement must name the replaced document",
        )
    for index, replacement in enumerate(business.replacements, 1):
        item = f"{path}/ReplacementInfoList/ReplacementInfo[{index}]"
        yield from _required(replacement.document_id, f"{item}/DocumentId", "DocumentId", skip)
        yield from _document_id(replacement.document_id, f"{item}/DocumentId")
        for position, organ_id in enumerate(replacement.organ_ids, 1):
            yield from check_organ_id(
                organ_id, f"{item}/OrganIdList/OrganId[{position}]", strict=False
            )


def _business_receivers(document_info: BusinessDocumentInfo) -> Iterator[Issue]:
    path = _BUSINESS
    info = f"{path}/BussinessDocumentInfo/ReceiverList"
    for index, receiver in enumerate(document_info.receivers, 1):
        item = f"{info}/Receiver[{index}]"
        yield from check_organ_id(receiver.organ_id, f"{item}/OrganId", strict=False)
        if receiver.receiver_type is not None and receiver.receiver_type not in (0, 1):
            yield _warning(
                IssueCode.OUT_OF_RANGE,
                f"{item}/ReceiverType",
                f"{receiver.receiver_type} not 0 or 1",
            )


def _body(package: DocumentPackage) -> Iterator[Issue]:
    references: dict[str, int] = {}  # bare content id -> its Reference's position
    yield from _references(package, references)
    attachments: dict[str, int] = {}  # bare content id -> its Attachment's position
    yield from _attachments(package, references, attachments)
    for key, index in references.items():
        if key not in attachments:
            yield _error(
                IssueCode.ATTACHMENT_MISSING,
                f"edXMLManifest/Reference[{index}]",
                f"no attachment carries content id {key!r}",
            )
    if not package.attachments and package.business_type is not BusinessDocType.REVOKE:
        yield _warning(IssueCode.ATTACHMENT_NONE, "AttachmentEncoded", "no attachment")


def _references(package: DocumentPackage, references: dict[str, int]) -> Iterator[Issue]:
    """The manifest's references, each recorded in `references` once."""
    for index, reference in enumerate(package.references, 1):
        path = f"edXMLManifest/Reference[{index}]"
        key = bare_content_id(reference.content_id)
        if not key:
            yield _error(IssueCode.REQUIRED, f"{path}/ContentId", "ContentId is required")
        elif key in references:
            yield _error(
                IssueCode.CONTENT_ID_DUPLICATE,
                f"{path}/ContentId",
                f"{reference.content_id!r} is already Reference[{references[key]}]",
            )
        else:
            references[key] = index
        if reference.content_type != ZIP_CONTENT_TYPE:
            yield _error(
                IssueCode.ATTACHMENT_CONTENT_TYPE,
                f"{path}/ContentType",
                f"{reference.content_type!r}: attachments travel zipped ({ZIP_CONTENT_TYPE})",
            )


def _attachments(
    package: DocumentPackage, references: Mapping[str, int], attachments: dict[str, int]
) -> Iterator[Issue]:
    """The attachments, each recorded in `attachments` once."""
    for index, attachment in enumerate(package.attachments, 1):
        path = f"AttachmentEncoded/Attachment[{index}]"
        key = bare_content_id(attachment.content_id)
        if not key:
            yield _error(IssueCode.REQUIRED, f"{path}/ContentId", "ContentId is required")
        elif key in attachments:
            yield _error(
                IssueCode.CONTENT_ID_DUPLICATE,
                f"{path}/ContentId",
                f"{attachment.content_id!r} is already Attachment[{attachments[key]}]",
            )
        else:
            attachments[key] = index
            if key not in references:
                yield _warning(
                    IssueCode.REFERENCE_MISSING, path, "the manifest does not list this attachment"
                )
        if not attachment.name:
            yield _error(IssueCode.REQUIRED, f"{path}/AttachmentName", "AttachmentName is required")
        if attachment.content_type != ZIP_CONTENT_TYPE:
            yield _error(
                IssueCode.ATTACHMENT_CONTENT_TYPE,
                f"{path}/ContentType",
                f"{attachment.content_type!r}: attachments travel zipped ({ZIP_CONTENT_TYPE})",
            )


def check_status(
    package: StatusPackage, *, now: dt.datetime | None = None, skip: Collection[str] = ()
) -> list[Issue]:
    """Every rule a status package breaks (domain.md §4)."""
    del now  # statuses carry no date rule today; the parameter keeps both checks alike
    base = "MessageHeader"
    issues = [*_organisation(package.sender, f"{base}/From", skip, what="the reporter's")]
    response = package.response_for
    if response is None:
        issues.append(_error(IssueCode.REQUIRED, f"{base}/ResponseFor", "ResponseFor is required"))
    else:
        path = f"{base}/ResponseFor"
        issues += _required(response.organ_id, f"{path}/OrganId", "ResponseFor/OrganId", skip)
        issues += check_organ_id(response.organ_id, f"{path}/OrganId")
        issues += _required(
            response.document_id, f"{path}/DocumentId", "ResponseFor/DocumentId", skip
        )
        issues += _document_id(response.document_id, f"{path}/DocumentId")
    code_path = f"{base}/StatusCode"
    issues += _required(package.status_code, code_path, "StatusCode", skip)
    if package.status_code and _STATUS_CODE.fullmatch(package.status_code) is None:
        issues.append(
            _error(IssueCode.STATUS_CODE_INVALID, code_path, f"{package.status_code!r}: two digits")
        )
    elif package.status_code and package.status_code not in KNOWN_STATUS_CODES:
        issues.append(
            _warning(IssueCode.STATUS_CODE_UNKNOWN, code_path, f"{package.status_code} not known")
        )
    if package.status_code == REFUSED and not package.description:
        issues.append(
            _error(
                IssueCode.STATUS_REASON_MISSING,
                f"{base}/Description",
                "a refusal (02) must give its reason",
            )
        )
    if len(package.description) > MAX_STATUS_DESCRIPTION:
        issues.append(
            _warning(
                IssueCode.TOO_LONG,
                f"{base}/Description",
                f"{len(package.description)} characters; some DMSs keep only 1000",
            )
        )
    issues += _required(package.timestamp, f"{base}/Timestamp", "Timestamp", skip)
    return issues
