"""The lenient edXML reader: accepts what real senders write and reports every deviation at once."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import IO, Final, Generic, TypeVar

from gateway.edxml import safe_xml
from gateway.edxml.attachments import Base64Sink, PayloadError, unpack
from gateway.edxml.dates import Parsed, format_date, format_timestamp, parse_date, parse_timestamp
from gateway.edxml.errors import EdxmlSizeLimitError, EdxmlValidationError, UnsupportedVersionError
from gateway.edxml.mapping import document_id_of_header, normalise
from gateway.edxml.model import (
    Attachment,
    Business,
    BusinessDocType,
    BusinessDocumentInfo,
    DocumentCode,
    DocumentPackage,
    DocumentType,
    EnvelopeSignature,
    MessageHeader,
    Organisation,
    OtherInfo,
    Package,
    PackageKind,
    PromulgationInfo,
    Receiver,
    Reference,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusPackage,
    TraceHeader,
    TraceHeaderList,
)
from gateway.edxml.names import (
    ALIASES,
    MANIFEST_VERSION,
    NAMESPACE,
    ORGANISATION_FIELDS,
    PAYLOAD_ELEMENT,
    PREFIX,
    SIGNATURE_NAMES,
    SOAP_ATTRIBUTES,
    ZIP_CONTENT_TYPE,
)
from gateway.edxml.report import Issue, IssueCode, Severity, ValidationReport
from gateway.edxml.safe_xml import Node
from gateway.edxml.validation import check_document, check_status

__all__ = ["ReadResult", "ReaderLimits", "read_document", "read_edxml", "read_status"]

P = TypeVar("P", DocumentPackage, StatusPackage, Package)

_MiB: Final = 1024 * 1024
_READ_CHUNK: Final = _MiB
_INTEGER = re.compile(r"-?[0-9]+")
_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})
# What the writer declares around the envelope signature: bindings equal to these need no
# re-declaration when the signature's bytes are written back.
_WRITER_SCOPE: Final[dict[str, str]] = {"": NAMESPACE, PREFIX: NAMESPACE}
_SIGNATURE_PARENTS: Final = frozenset({"edXMLHeader", "edXMLEnvelope"})


@dataclass(frozen=True, slots=True)
class ReaderLimits:
    """Bounds applied while reading; passing one fails with SIZE_LIMIT_EXCEEDED at once."""

    max_xml_bytes: int = 128 * _MiB
    max_attachments: int = 100
    # Decompressed, per attachment and for the package as a whole.
    max_attachment_bytes: int = 64 * _MiB
    max_total_attachment_bytes: int = 256 * _MiB
    max_elements: int = 200_000
    max_depth: int = 64
    # Root namespaces read as this edXML version; another one is UNSUPPORTED_VERSION.
    namespaces: frozenset[str] = frozenset({NAMESPACE})


@dataclass(frozen=True, slots=True)
class ReadResult(Generic[P]):
    """The parsed package (as complete as the input allowed) and everything found wrong with it."""

    package: P
    report: ValidationReport

    def raise_for_errors(self) -> P:
        """The package, or EdxmlValidationError carrying every error (warnings do not count)."""
        if not self.report.ok:
            raise EdxmlValidationError(self.report.errors)
        return self.package


Source = bytes | bytearray | memoryview | IO[bytes]


def read_edxml(
    source: Source, *, limits: ReaderLimits | None = None, now: dt.datetime | None = None
) -> ReadResult[Package]:
    """Read a document or status package.

    Raises UnsafeXmlError / MalformedXmlError / EdxmlValidationError (reason VALIDATION) for input
    that is not edXML at all, EdxmlSizeLimitError (SIZE_LIMIT_EXCEEDED) when a bound is passed,
    UnsupportedVersionError (UNSUPPORTED_VERSION) for an unknown root namespace. Everything else
    is reported, not raised. `now` is the clock for "not in the future" (default: the real one).
    """
    limits = limits or ReaderLimits()
    data = _load(source, limits.max_xml_bytes)
    return _Reader(limits, now).read(data)


def read_document(
    source: Source, *, limits: ReaderLimits | None = None, now: dt.datetime | None = None
) -> ReadResult[DocumentPackage]:
    """Read a package that must be a document (`messagetype=edoc`)."""
    return _read_as(DocumentPackage, PackageKind.DOCUMENT, source, limits, now)


def read_status(
    source: Source, *, limits: ReaderLimits | None = None, now: dt.datetime | None = None
) -> ReadResult[StatusPackage]:
    """Read a package that must be a status (`messagetype=status`)."""
    return _read_as(StatusPackage, PackageKind.STATUS, source, limits, now)


def _read_as(
    kind: type[P],
    expected: PackageKind,
    source: Source,
    limits: ReaderLimits | None,
    now: dt.datetime | None,
) -> ReadResult[P]:
    result = read_edxml(source, limits=limits, now=now)
    if not isinstance(result.package, kind):
        raise _mismatch(expected)
    return ReadResult(result.package, result.report)


def _mismatch(expected: PackageKind) -> EdxmlValidationError:
    return EdxmlValidationError.single(
        IssueCode.MESSAGE_TYPE_MISMATCH,
        f"expected a {expected.value} package",
        "MessageHeader",
    )


def _too_large(limit: int) -> EdxmlSizeLimitError:
    issue = Issue(IssueCode.XML_TOO_LARGE, "", Severity.ERROR, f"more than {limit} bytes")
    return EdxmlSizeLimitError((issue,), limit=limit)


def _load(source: Source, limit: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) > limit:
            raise _too_large(limit)
        return bytes(source)
    # A stream is read no further than one byte past the bound.
    chunks: list[bytes] = []
    total = 0
    while chunk := source.read(min(_READ_CHUNK, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
    return b"".join(chunks)


def _sink_for(node: Node, _parent: Node | None) -> Base64Sink | None:
    return Base64Sink() if node.local == PAYLOAD_ELEMENT else None


def _capture(node: Node, parent: Node | None) -> bool:
    return (
        node.local in SIGNATURE_NAMES and parent is not None and parent.local in _SIGNATURE_PARENTS
    )


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


@dataclass(slots=True)
class _Context:
    namespaces: frozenset[str]
    issues: list[Issue] = field(default_factory=list)
    # Paths whose value was present but unusable: not reported again as missing.
    unreadable: set[str] = field(default_factory=set)

    def error(self, code: IssueCode, path: str, message: str) -> None:
        self.issues.append(Issue(code, path, Severity.ERROR, message))

    def warn(self, code: IssueCode, path: str, message: str, *, normalised: bool = False) -> None:
        self.issues.append(Issue(code, path, Severity.WARNING, message, normalised))

    def visit(
        self,
        node: Node,
        path: str,
        *,
        envelope: bool,
        attributes: Collection[str] = (),
        soap: bool = False,
    ) -> None:
        """Name checks for one element: namespace, prefix, spelling, attributes."""
        alias = node.local in ALIASES
        if alias:
            self.warn(
                IssueCode.ALTERNATE_SPELLING,
                path,
                f"{node.local} read as the standard's {ALIASES[node.local]}",
                normalised=True,
            )
        if node.namespace is None:
            self.warn(
                IssueCode.NAMESPACE_MISSING, path, f"{node.local} has no namespace", normalised=True
            )
        elif node.namespace not in self.namespaces:
            if not alias:
                self.warn(
                    IssueCode.NAMESPACE_FOREIGN,
                    path,
                    f"{node.local} is in namespace {node.namespace!r}",
                    normalised=True,
                )
        elif envelope and node.prefix is None:
            self.warn(
                IssueCode.PREFIX_MISSING,
                path,
                f"{node.local} lacks the {PREFIX}: prefix",
                normalised=True,
            )
        elif envelope and node.prefix != PREFIX:
            self.warn(
                IssueCode.PREFIX_NONSTANDARD,
                path,
                f"{node.prefix}:{node.local} instead of {PREFIX}:{node.local}",
                normalised=True,
            )
        for key in node.attributes:
            local = key.rpartition("}")[2]
            if soap and local in SOAP_ATTRIBUTES:
                self.warn(
                    IssueCode.SOAP_ATTRIBUTE_IGNORED,
                    f"{path}/@{local}",
                    f"SOAP attribute {local} ignored",
                    normalised=True,
                )
            elif key not in attributes:
                self.warn(IssueCode.ATTRIBUTE_IGNORED, f"{path}/@{local}", f"{key} ignored")

    def clean(self, raw: str, path: str) -> str:
        """NFC, trimmed: how docaxis stores every text field. A change is reported."""
        value = normalise(raw)
        if value != raw:
            what = "trimmed" if value == raw.strip() else "normalised to NFC and trimmed"
            self.warn(IssueCode.TEXT_NORMALISED, path, f"text {what}", normalised=True)
        return value


class _View:
    """One element's children by canonical name; remembers what was read to report the rest."""

    def __init__(self, ctx: _Context, node: Node, path: str, *, envelope: bool) -> None:
        self.ctx = ctx
        self.node = node
        self.path = path
        self.envelope = envelope
        self._by: dict[str, list[Node]] = {}
        for child in node.children:
            self._by.setdefault(ALIASES.get(child.local, child.local), []).append(child)
        self._read: set[str] = set()

    # Element access.

    def one(
        self,
        name: str,
        *,
        attributes: Collection[str] = (),
        soap: bool = False,
        envelope: bool | None = None,
    ) -> tuple[Node, str] | None:
        self._read.add(name)
        nodes = self._by.get(name, [])
        if not nodes:
            return None
        path = _join(self.path, name)
        for index, extra in enumerate(nodes[1:], 2):
            self.ctx.warn(
                IssueCode.ELEMENT_DUPLICATE,
                f"{path}[{index}]",
                f"{extra.local} given more than once; the first is used",
            )
        inside = self.envelope if envelope is None else envelope
        self.ctx.visit(nodes[0], path, envelope=inside, attributes=attributes, soap=soap)
        return nodes[0], path

    def many(self, name: str) -> list[tuple[Node, str]]:
        self._read.add(name)
        found = []
        for index, node in enumerate(self._by.get(name, []), 1):
            path = f"{_join(self.path, name)}[{index}]"
            self.ctx.visit(node, path, envelope=self.envelope)
            found.append((node, path))
        return found

    def child(
        self,
        name: str,
        *,
        attributes: Collection[str] = (),
        soap: bool = False,
        envelope: bool | None = None,
        path: str | None = None,
    ) -> _View | None:
        """The element's view; `path` overrides where its children's paths start (blocks)."""
        found = self.one(name, attributes=attributes, soap=soap, envelope=envelope)
        if found is None:
            return None
        inside = self.envelope if envelope is None else envelope
        return _View(self.ctx, found[0], found[1] if path is None else path, envelope=inside)

    def sub(self, node: Node, path: str) -> _View:
        return _View(self.ctx, node, path, envelope=self.envelope)

    def unchecked(self, name: str) -> list[tuple[Node, str]]:
        """Elements taken as they are, without name checks (the envelope signature)."""
        self._read.add(name)
        return [(node, _join(self.path, name)) for node in self._by.get(name, [])]

    def finish(self) -> None:
        for name, nodes in self._by.items():
            if name in self._read:
                continue
            for index, node in enumerate(nodes, 1):
                suffix = f"[{index}]" if len(nodes) > 1 else ""
                self.ctx.warn(
                    IssueCode.ELEMENT_UNKNOWN,
                    _join(self.path, name) + suffix,
                    f"unexpected element {node.local} ignored",
                )

    # Values.

    def leaf(self, node: Node, path: str) -> str:
        if node.children:
            self.ctx.warn(IssueCode.VALUE_INVALID, path, "child elements of a text field ignored")
        return self.ctx.clean(node.text, path)

    def text(self, name: str) -> str:
        found = self.one(name)
        return "" if found is None else self.leaf(*found)

    def texts(self, name: str) -> tuple[str, ...]:
        return tuple(self.leaf(node, path) for node, path in self.many(name))

    def _unusable(self, path: str, message: str, *, required: bool, date: bool = False) -> None:
        self.ctx.unreadable.add(path)
        code = IssueCode.DATE_INVALID if date else IssueCode.VALUE_INVALID
        if required:
            self.ctx.error(code, path, message)
        else:
            self.ctx.warn(code, path, message + "; ignored")

    def integer(self, name: str, *, required: bool = False) -> int | None:
        found = self.one(name)
        if found is None:
            return None
        path = found[1]
        raw = self.leaf(*found)
        if not raw:
            return None
        if _INTEGER.fullmatch(raw) is None:
            self._unusable(path, f"{raw!r} is not a whole number", required=required)
            return None
        return int(raw)

    def _moment(self, name: str, *, required: bool, timestamp: bool) -> Parsed | None:
        found = self.one(name)
        if found is None:
            return None
        path = found[1]
        raw = self.leaf(*found)
        if not raw:
            return None
        parsed = parse_timestamp(raw) if timestamp else parse_date(raw)
        form = "yyyy/MM/dd HH:mm:ss" if timestamp else "yyyy/MM/dd"
        if parsed is None:
            self._unusable(path, f"{raw!r} is not a {form} date", required=required, date=True)
            return None
        if not parsed.strict:
            strict = format_timestamp(parsed.value) if timestamp else format_date(parsed.date)
            self.ctx.warn(
                IssueCode.DATE_NORMALISED, path, f"{raw!r} read as {strict}", normalised=True
            )
        return parsed

    def date(self, name: str, *, required: bool = False) -> dt.date | None:
        parsed = self._moment(name, required=required, timestamp=False)
        return None if parsed is None else parsed.date

    def timestamp(self, name: str, *, required: bool = False) -> dt.datetime | None:
        parsed = self._moment(name, required=required, timestamp=True)
        return None if parsed is None else parsed.value

    def boolean(self, name: str, *, strict: tuple[str, str]) -> bool | None:
        """`strict` is the (true, false) spelling the standard uses for this field."""
        found = self.one(name)
        if found is None:
            return None
        path = found[1]
        raw = self.leaf(*found)
        if not raw:
            return None
        lowered = raw.lower()
        if lowered in _TRUE or lowered in _FALSE:
            value = lowered in _TRUE
            if raw != strict[0 if value else 1]:
                self.ctx.warn(
                    IssueCode.BOOLEAN_NORMALISED,
                    path,
                    f"{raw!r} read as {strict[0 if value else 1]}",
                    normalised=True,
                )
            return value
        self._unusable(path, f"{raw!r} is not a boolean", required=False)
        return None


class _Reader:
    def __init__(self, limits: ReaderLimits, now: dt.datetime | None) -> None:
        self.limits = limits
        self.now = now
        self.ctx = _Context(limits.namespaces)

    def read(self, data: bytes) -> ReadResult[Package]:
        parsed = safe_xml.parse(
            data,
            limits=safe_xml.XmlLimits(self.limits.max_elements, self.limits.max_depth),
            sink_for=_sink_for,
            capture=_capture,
        )
        ctx = self.ctx
        if parsed.transcoded_from is not None:
            ctx.warn(
                IssueCode.ENCODING_NORMALISED,
                "",
                f"read as {parsed.transcoded_from}; written as UTF-8",
                normalised=True,
            )
        root = parsed.root
        if root.local != "edXML":
            raise EdxmlValidationError.single(
                IssueCode.NOT_EDXML, f"the root element is {root.local}, not edXML"
            )
        if root.namespace is not None and root.namespace not in self.limits.namespaces:
            issue = Issue(
                IssueCode.NAMESPACE_UNSUPPORTED,
                "edXML",
                Severity.ERROR,
                f"namespace {root.namespace!r} is not a supported edXML version",
            )
            raise UnsupportedVersionError((issue,), namespace=root.namespace)
        ctx.visit(root, "edXML", envelope=False)
        top = _View(ctx, root, "", envelope=False)
        envelope = top.child("edXMLEnvelope", envelope=True, path="")
        encoded = top.child("AttachmentEncoded")
        header = body = None
        signature: EnvelopeSignature | None = None
        if envelope is None:
            ctx.error(IssueCode.REQUIRED, "edXMLEnvelope", "edXMLEnvelope is required")
        else:
            header = envelope.child("edXMLHeader", path="")
            body = envelope.child("edXMLBody", path="")
            # Some senders put the signature beside the header rather than inside it.
            signature = self._signature(envelope, parsed)
        message = None
        if header is None:
            ctx.error(IssueCode.REQUIRED, "edXMLHeader", "edXMLHeader is required")
        else:
            signature = self._signature(header, parsed) or signature
            found = header.one("MessageHeader")
            if found is None:
                ctx.error(IssueCode.REQUIRED, "MessageHeader", "MessageHeader is required")
            else:
                message = header.sub(*found)
        package: Package
        if message is not None and "StatusCode" in {c.local for c in message.node.children}:
            package = self._status(message, signature)
            validation = check_status(package, now=self.now, skip=ctx.unreadable)
            for name, extra in (("edXMLBody", body), ("AttachmentEncoded", encoded)):
                if extra is not None:
                    ctx.warn(IssueCode.ELEMENT_UNKNOWN, name, "a status package has no body")
        else:
            package = self._document(header, message, body, encoded, signature)
            validation = check_document(package, now=self.now, skip=ctx.unreadable)
        for view in (top, envelope, header):
            if view is not None:
                view.finish()
        return ReadResult(package, ValidationReport.of([*ctx.issues, *validation]))

    # Envelope signature.

    def _signature(self, parent: _View, parsed: safe_xml.ParsedXml) -> EnvelopeSignature | None:
        found: EnvelopeSignature | None = None
        for name in sorted(SIGNATURE_NAMES):
            for node, path in parent.unchecked(name):
                if found is not None:
                    self.ctx.warn(
                        IssueCode.ELEMENT_DUPLICATE, path, "more than one envelope signature"
                    )
                    continue
                if not node.children and not node.text.strip():
                    self.ctx.warn(IssueCode.SIGNATURE_EMPTY, path, "empty envelope signature")
                needed = tuple(
                    (prefix, uri)
                    for prefix, uri in node.outer_namespaces
                    if _WRITER_SCOPE.get(prefix) != uri
                )
                found = EnvelopeSignature(raw=parsed.raw(node), namespaces=needed)
        return found

    # Status packages.

    def _status(self, message: _View, signature: EnvelopeSignature | None) -> StatusPackage:
        sender = self._organisation(message.child("From"))
        response = message.child("ResponseFor")
        staff = message.child("StaffInfo")
        code = message.text("StatusCode")
        if len(code) == 1 and code.isdigit() and code.isascii():
            self.ctx.warn(
                IssueCode.CODE_NORMALISED,
                "MessageHeader/StatusCode",
                f"{code!r} read as 0{code}",
                normalised=True,
            )
            code = "0" + code
        package = StatusPackage(
            sender=sender,
            response_for=None if response is None else self._response_for(response),
            staff=None if staff is None else self._staff(staff),
            status_code=code,
            description=message.text("Description"),
            timestamp=message.timestamp("Timestamp", required=True),
            signature=signature,
        )
        message.finish()
        return package

    # Document packages.

    def _document(
        self,
        header: _View | None,
        message: _View | None,
        body: _View | None,
        encoded: _View | None,
        signature: EnvelopeSignature | None,
    ) -> DocumentPackage:
        message_header = MessageHeader() if message is None else self._message_header(message)
        trace = TraceHeaderList()
        if header is not None:
            # A missing list is reported by validation (no TraceHeader, no Bussiness).
            found = header.child("TraceHeaderList", soap=True)
            if found is not None:
                trace = self._trace(found)
        references: tuple[Reference, ...] = ()
        if body is None:
            self.ctx.warn(IssueCode.REQUIRED, "edXMLBody", "no edXMLBody")
        else:
            manifest = body.child("edXMLManifest", attributes=("version",))
            if manifest is not None:
                version = manifest.node.attributes.get("version", "")
                if version != MANIFEST_VERSION:
                    self.ctx.warn(
                        IssueCode.MANIFEST_VERSION,
                        "edXMLManifest/@version",
                        f"version {version!r}; read as {MANIFEST_VERSION}",
                        normalised=True,
                    )
                references = tuple(
                    self._reference(manifest.sub(*f)) for f in manifest.many("Reference")
                )
                manifest.finish()
            body.finish()
        attachments = () if encoded is None else self._attachments(encoded)
        return DocumentPackage(
            header=message_header,
            trace=trace,
            signature=signature,
            references=references,
            attachments=attachments,
        )

    def _organisation(self, view: _View | None) -> Organisation:
        if view is None:
            return Organisation()
        values = {attribute: view.text(name) for name, attribute in ORGANISATION_FIELDS}
        view.finish()
        return Organisation(**values)

    def _message_header(self, view: _View) -> MessageHeader:
        sender = self._organisation(view.child("From"))
        recipients = tuple(self._organisation(view.sub(*f)) for f in view.many("To"))
        code = self._code(view.child("Code"))
        promulgation = PromulgationInfo()
        found = view.child("PromulgationInfo")
        if found is not None:
            promulgation = PromulgationInfo(
                place=found.text("Place"), date=found.date("PromulgationDate", required=True)
            )
            found.finish()
        document_type = DocumentType()
        found = view.child("DocumentType")
        if found is not None:
            document_type = DocumentType(
                type_code=found.integer("Type", required=True),
                type_detail=found.integer("TypeDetail"),
                type_name=found.text("TypeName"),
            )
            found.finish()
        signer = None
        found = view.child("SignerInfo")
        if found is not None:
            signer = SignerInfo(
                competence=found.text("Competence"),
                position=found.text("Position"),
                full_name=found.text("FullName"),
            )
            found.finish()
        to_places: tuple[str, ...] = ()
        found = view.child("ToPlaces")
        if found is not None:
            to_places = found.texts("Place")
            found.finish()
        header = MessageHeader(
            sender=sender,
            recipients=recipients,
            code=code,
            promulgation=promulgation,
            document_type=document_type,
            subject=view.text("Subject"),
            content=view.text("Content"),
            signer=signer,
            due_date=view.date("DueDate"),
            to_places=to_places,
            other_info=self._other_info(view.child("OtherInfo")),
            response_for=tuple(self._response_for(view.sub(*f)) for f in view.many("ResponseFor")),
            steering_type=view.integer("SteeringType"),
            document_id=view.text("DocumentId"),
        )
        view.finish()
        if not header.document_id:
            computed = document_id_of_header(header)
            if computed is not None:
                self.ctx.warn(
                    IssueCode.DOCUMENT_ID_COMPUTED,
                    "MessageHeader/DocumentId",
                    f"no DocumentId; {computed!r} computed from From, date and Code",
                    normalised=True,
                )
                header = replace(header, document_id=computed)
        return header

    def _code(self, view: _View | None) -> DocumentCode:
        if view is None:
            return DocumentCode()
        if not view.node.children and "/" in view.node.text:
            # Some senders write the Code block like a status's "number/notation" string.
            raw = self.ctx.clean(view.node.text, view.path)
            number, notation = raw.split("/", 1)
            self.ctx.warn(
                IssueCode.CODE_NORMALISED,
                view.path,
                f"{raw!r} read as CodeNumber {number!r} and CodeNotation {notation!r}",
                normalised=True,
            )
            return DocumentCode(number, notation)
        code = DocumentCode(view.text("CodeNumber"), view.text("CodeNotation"))
        view.finish()
        return code

    def _other_info(self, view: _View | None) -> OtherInfo | None:
        if view is None:
            return None
        appendixes: tuple[str, ...] = ()
        found = view.child("Appendixes")
        if found is not None:
            appendixes = found.texts("Appendix")
            found.finish()
        other = OtherInfo(
            priority=view.integer("Priority", required=True),
            sphere_of_promulgation=view.text("SphereOfPromulgation"),
            typer_notation=view.text("TyperNotation"),
            promulgation_amount=view.integer("PromulgationAmount"),
            page_amount=view.integer("PageAmount"),
            direction=view.boolean("Direction", strict=("true", "false")),
            appendixes=appendixes,
        )
        view.finish()
        return other

    def _response_for(self, view: _View) -> ResponseFor:
        code_text = ""
        found = view.one("Code")
        if found is not None:
            node, path = found
            if node.children:
                # A document-style Code block where a status writes "number/notation".
                code = self._code(view.sub(node, path))
                code_text = f"{code.number}/{code.notation}"
                self.ctx.warn(
                    IssueCode.CODE_NORMALISED, path, f"read as {code_text!r}", normalised=True
                )
            else:
                code_text = view.leaf(node, path)
        response = ResponseFor(
            organ_id=view.text("OrganId"),
            code=code_text,
            promulgation_date=view.date("PromulgationDate"),
            document_id=view.text("DocumentId"),
        )
        view.finish()
        return response

    def _staff(self, view: _View) -> StaffInfo:
        staff = StaffInfo(
            department=view.text("Department"),
            staff=view.text("Staff"),
            email=view.text("Email"),
            mobile=view.text("Mobile"),
        )
        view.finish()
        return staff

    def _trace(self, view: _View) -> TraceHeaderList:
        headers = []
        for found in view.many("TraceHeader"):
            item = view.sub(*found)
            headers.append(TraceHeader(item.text("OrganId"), item.timestamp("Timestamp")))
            item.finish()
        business = view.child("Bussiness")
        trace = TraceHeaderList(
            trace_headers=tuple(headers),
            business=None if business is None else self._business(business),
        )
        view.finish()
        return trace

    def _business(self, view: _View) -> Business:
        doc_type: BusinessDocType | None = BusinessDocType.NEW
        found = view.one("BussinessDocType")
        raw = "" if found is None else view.leaf(*found)
        path = found[1] if found is not None else _join(view.path, "BussinessDocType")
        if not raw:
            self.ctx.warn(
                IssueCode.BUSINESS_TYPE_ASSUMED,
                path,
                "no BussinessDocType: 0 (new)",
                normalised=True,
            )
        elif _INTEGER.fullmatch(raw) and int(raw) in {kind.value for kind in BusinessDocType}:
            doc_type = BusinessDocType(int(raw))
        else:
            doc_type = None
            self.ctx.unreadable.add(path)
            self.ctx.error(IssueCode.VALUE_INVALID, path, f"{raw!r} is not 0, 1, 2 or 3")
        staff = view.child("StaffInfo")
        info = view.child("BussinessDocumentInfo")
        replacements: list[ReplacementInfo] = []
        listing = view.child("ReplacementInfoList")
        if listing is not None:
            for item_found in listing.many("ReplacementInfo"):
                item = listing.sub(*item_found)
                organ_ids: tuple[str, ...] = ()
                organs = item.child("OrganIdList")
                if organs is not None:
                    organ_ids = organs.texts("OrganId")
                    organs.finish()
                replacements.append(ReplacementInfo(item.text("DocumentId"), organ_ids))
                item.finish()
            listing.finish()
        business = Business(
            doc_type=doc_type,
            reason=view.text("BussinessDocReason"),
            document_id=view.text("DocumentId"),
            paper=view.integer("Paper"),
            staff=None if staff is None else self._staff(staff),
            document_info=None if info is None else self._document_info(info),
            replacements=tuple(replacements),
        )
        view.finish()
        return business

    def _document_info(self, view: _View) -> BusinessDocumentInfo:
        receivers = []
        listing = view.child("ReceiverList")
        if listing is not None:
            for found in listing.many("Receiver"):
                item = listing.sub(*found)
                receivers.append(Receiver(item.text("OrganId"), item.integer("ReceiverType")))
                item.finish()
            listing.finish()
        info = BusinessDocumentInfo(
            document_info=view.boolean("DocumentInfo", strict=("1", "0")),
            document_receiver=view.boolean("DocumentReceiver", strict=("1", "0")),
            receivers=tuple(receivers),
        )
        view.finish()
        return info

    def _reference(self, view: _View) -> Reference:
        content_type = view.text("ContentType")
        if content_type != ZIP_CONTENT_TYPE:
            self._zip_content_type(content_type, _join(view.path, "ContentType"))
        reference = Reference(
            content_id=view.text("ContentId"),
            description=view.text("Description"),
            attachment_name=view.text("AttachmentName"),
        )
        view.finish()
        return reference

    def _zip_content_type(self, content_type: str, path: str) -> None:
        # The wire type describes the transport (always a zip, as the writer sends it); the
        # document's own type is derived from its name when it is stored.
        self.ctx.warn(
            IssueCode.ATTACHMENT_CONTENT_TYPE_NORMALISED,
            path,
            f"{content_type!r} read as {ZIP_CONTENT_TYPE} (attachments travel zipped)",
            normalised=True,
        )

    def _attachments(self, view: _View) -> tuple[Attachment, ...]:
        found = view.many("Attachment")
        limit = self.limits.max_attachments
        if len(found) > limit:
            issue = Issue(
                IssueCode.TOO_MANY_ATTACHMENTS,
                "AttachmentEncoded",
                Severity.ERROR,
                f"{len(found)} attachments, at most {limit}",
            )
            raise EdxmlSizeLimitError((issue,), limit=limit)
        remaining = self.limits.max_total_attachment_bytes
        attachments = []
        for item_found in found:
            item = view.sub(*item_found)
            attachment = self._attachment(item, remaining)
            remaining -= attachment.size
            attachments.append(attachment)
            item.finish()
        view.finish()
        return tuple(attachments)

    def _attachment(self, view: _View, remaining: int) -> Attachment:
        content_id = view.text("ContentId")
        name = view.text("AttachmentName")
        description = view.text("Description")
        content_type = view.text("ContentType")
        payload_found = view.one(PAYLOAD_ELEMENT)
        data = b""
        archive_name = ""
        if payload_found is None:
            self.ctx.error(
                IssueCode.REQUIRED, _join(view.path, PAYLOAD_ELEMENT), "the payload is missing"
            )
        else:
            node, path = payload_found
            sink = node.sink
            assert isinstance(sink, Base64Sink)  # set for every payload element by _sink_for
            payload = sink.finish()
            if sink.error is not None:
                self.ctx.error(IssueCode.ATTACHMENT_BASE64_INVALID, path, sink.error)
            elif not sink.seen:
                self.ctx.error(IssueCode.REQUIRED, path, "the payload is empty")
            else:
                data, archive_name, zipped = self._unpack(payload, path, remaining)
                if not zipped:
                    self.ctx.warn(
                        IssueCode.ATTACHMENT_NOT_ZIPPED,
                        path,
                        "the payload is not a zip; taken as the file itself",
                        normalised=True,
                    )
        if content_type != ZIP_CONTENT_TYPE:
            self._zip_content_type(content_type, _join(view.path, "ContentType"))
        return Attachment(
            content_id=content_id,
            name=name,
            data=data,
            description=description,
            archive_name="" if archive_name == name else archive_name,
        )

    def _unpack(self, payload: bytes, path: str, remaining: int) -> tuple[bytes, str, bool]:
        per_file = self.limits.max_attachment_bytes
        try:
            unpacked = unpack(payload, max_bytes=min(per_file, max(remaining, 0)), path=path)
        except EdxmlSizeLimitError as exc:
            if remaining < per_file:
                total = self.limits.max_total_attachment_bytes
                issue = Issue(
                    IssueCode.ATTACHMENTS_TOO_LARGE,
                    path,
                    Severity.ERROR,
                    f"the attachments decompress to more than {total} bytes in all",
                )
                raise EdxmlSizeLimitError((issue,), limit=total) from exc
            raise
        except PayloadError as exc:
            self.ctx.error(exc.code, path, str(exc))
            return b"", "", True
        return unpacked.data, unpacked.archive_name, unpacked.zipped
