"""A hardened expat front end: refuses DTDs and entities, bounds the tree, keeps byte spans."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, NoReturn, Protocol
from xml.parsers import expat

from gateway.edxml.errors import EdxmlSizeLimitError, MalformedXmlError, UnsafeXmlError
from gateway.edxml.report import Issue, IssueCode, Severity

# Why not xml.etree or lxml: the envelope signature must be kept byte for byte, which needs the
# byte offsets expat reports while parsing, and attachment payloads are decoded as they stream in
# rather than held twice as text. The hardening is the one defusedxml applies to expat, made
# stricter: any DOCTYPE aborts the parse as it starts, before its internal subset is read, so no
# entity (internal, external or parameter) can be declared, let alone expanded, and nothing is
# fetched. Without a DTD the only references XML allows are the five predefined entities and
# character references; anything else is a well-formedness error.

# Expat reports "uri<sep>local<sep>prefix"; a control character cannot occur in a document.
_SEP: Final = "\x1f"
_DECLARED_ENCODING = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
# Encodings a government DMS might plausibly emit; anything else (and every text-transform codec
# `codecs.lookup` would also find) is refused.
_ENCODINGS: Final = frozenset(
    {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "ascii", "latin-1", "cp1252", "cp1258"}
)


class TextSink(Protocol):
    """Receives an element's character data instead of the tree (large payloads)."""

    def feed(self, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class XmlLimits:
    max_elements: int = 200_000
    max_depth: int = 64


@dataclass(eq=False, slots=True)
class Node:
    """An element: its expanded name, the prefix it was written with, text and children."""

    namespace: str | None
    local: str
    prefix: str | None
    # "{uri}local" for a namespaced attribute, "local" otherwise.
    attributes: dict[str, str]
    line: int
    start: int
    children: list[Node] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    sink: TextSink | None = None
    # Byte span [start, end) of the whole element; only kept for nodes the caller asks for.
    end: int = -1
    # Captured nodes: the (prefix, uri) bindings from outside the element that it relies on.
    outer_namespaces: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass(frozen=True, slots=True)
class ParsedXml:
    root: Node
    # The bytes the offsets refer to (UTF-8; transcoded when the document was not).
    data: bytes
    # The declared or detected encoding when it was not UTF-8, else None.
    transcoded_from: str | None

    def raw(self, node: Node) -> bytes:
        return self.data[node.start : node.end]


def _fail(code: IssueCode, message: str, line: int = 0) -> NoReturn:
    where = f" (line {line})" if line else ""
    if code is IssueCode.XML_FORBIDDEN:
        raise UnsafeXmlError.single(code, message + where)
    raise MalformedXmlError.single(code, message + where)


def _to_utf8(data: bytes) -> tuple[bytes, str | None]:
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :], None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        declared = "utf-16"
    else:
        match = _DECLARED_ENCODING.match(data[:512])
        declared = match.group(1).decode("ascii") if match else "utf-8"
    try:
        name = codecs.lookup(declared).name
    except LookupError:
        name = declared.lower()
    if name in ("utf-8", "ascii"):
        return data, None
    if name not in _ENCODINGS:
        _fail(IssueCode.ENCODING_UNSUPPORTED, f"encoding {declared!r} is not supported")
    try:
        text = data.decode(name)
    except UnicodeDecodeError as exc:
        _fail(IssueCode.XML_MALFORMED, f"not valid {declared}: {exc.reason}")
    # The parser is told the input is UTF-8, which overrides the declaration left in the text.
    return text.removeprefix("\ufeff").encode("utf-8"), declared


class _Builder:
    def __init__(
        self,
        parser: expat.XMLParserType,
        limits: XmlLimits,
        sink_for: Callable[[Node, Node | None], TextSink | None],
        capture: Callable[[Node, Node | None], bool],
    ) -> None:
        self._parser = parser
        self._limits = limits
        self._sink_for = sink_for
        self._capture = capture
        self._stack: list[Node] = []
        # Per open element: prefix -> (uri, depth it was declared at); "" is the default.
        self._scopes: list[dict[str, tuple[str, int]]] = [{}]
        self._pending_decls: dict[str, str] = {}
        self._elements = 0
        self.root: Node | None = None
        # The open captured element (depth, node) and the prefixes its subtree uses.
        self._captured: tuple[int, Node] | None = None
        self._used: dict[str, str] = {}
        # A captured element that has just ended: its span closes at the next event.
        self._closing: Node | None = None

    def _mark(self) -> None:
        if self._closing is not None:
            self._closing.end = self._parser.CurrentByteIndex
            self._closing = None

    def namespace_start(self, prefix: str | None, uri: str | None) -> None:
        self._mark()
        self._pending_decls[prefix or ""] = uri or ""

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self._mark()
        parts = name.split(_SEP)
        namespace = parts[0] if len(parts) > 1 else None
        local = parts[1] if len(parts) > 1 else parts[0]
        prefix = parts[2] if len(parts) > 2 else None
        depth = len(self._stack) + 1
        self._elements += 1
        line = self._parser.CurrentLineNumber
        if self._elements > self._limits.max_elements:
            raise EdxmlSizeLimitError(
                (_issue(IssueCode.TOO_MANY_ELEMENTS, f"more than {self._limits.max_elements}"),),
                limit=self._limits.max_elements,
            )
        if depth > self._limits.max_depth:
            raise EdxmlSizeLimitError(
                (_issue(IssueCode.TOO_DEEP, f"nesting deeper than {self._limits.max_depth}"),),
                limit=self._limits.max_depth,
            )
        scope = self._scopes[-1]
        if self._pending_decls:
            scope = dict(scope)
            for declared, uri in self._pending_decls.items():
                scope[declared] = (uri, depth)
            self._pending_decls = {}
        self._scopes.append(scope)
        node = Node(
            namespace=namespace,
            local=local,
            prefix=prefix,
            attributes={_attribute_key(k): v for k, v in attributes.items()},
            line=line,
            start=self._parser.CurrentByteIndex,
        )
        parent = self._stack[-1] if self._stack else None
        if parent is not None:
            parent.children.append(node)
        else:
            self.root = node
        node.sink = self._sink_for(node, parent)
        if self._captured is None and self._capture(node, parent):
            self._captured = (depth, node)
            self._used = {}
        if self._captured is not None:
            self._note_used(prefix or "", scope, self._captured[0])
            for key in attributes:
                attribute_parts = key.split(_SEP)
                if len(attribute_parts) > 2:
                    self._note_used(attribute_parts[2], scope, self._captured[0])
        self._stack.append(node)

    def _note_used(self, prefix: str, scope: dict[str, tuple[str, int]], top: int) -> None:
        if prefix == "xml":
            return
        uri, declared_at = scope.get(prefix, ("", 0))
        if declared_at < top:
            self._used[prefix] = uri

    def end(self, _name: str) -> None:
        self._mark()
        node = self._stack.pop()
        self._scopes.pop()
        if self._captured is not None and self._captured[1] is node:
            node.outer_namespaces = tuple(sorted(self._used.items()))
            self._captured = None
            self._closing = node

    def characters(self, data: str) -> None:
        self._mark()
        if not self._stack:
            return
        node = self._stack[-1]
        if node.sink is not None:
            node.sink.feed(data)
        else:
            node.parts.append(data)

    def other(self, *_args: object) -> None:
        self._mark()

    def finish(self, size: int) -> None:
        if self._closing is not None:
            self._closing.end = size


def _attribute_key(name: str) -> str:
    parts = name.split(_SEP)
    if len(parts) == 1:
        return parts[0]
    return f"{{{parts[0]}}}{parts[1]}"


def _issue(code: IssueCode, message: str) -> Issue:
    return Issue(code, "", Severity.ERROR, message)


def parse(
    data: bytes,
    *,
    limits: XmlLimits,
    sink_for: Callable[[Node, Node | None], TextSink | None] = lambda _node, _parent: None,
    capture: Callable[[Node, Node | None], bool] = lambda _node, _parent: False,
) -> ParsedXml:
    """Parse `data` into a tree, refusing any DTD or entity declaration.

    `sink_for` may route an element's text to a sink (it then stays out of the tree); `capture`
    marks elements whose exact byte span and outer namespace bindings are wanted.
    """
    utf8, transcoded_from = _to_utf8(data)
    parser = expat.ParserCreate(encoding="UTF-8", namespace_separator=_SEP)
    parser.namespace_prefixes = True
    # Unbuffered so that each text event's byte index is where that text starts.
    parser.buffer_text = False
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def forbid_doctype(name: str, *_rest: object) -> None:
        _fail(IssueCode.XML_FORBIDDEN, f"a DTD (DOCTYPE {name}) is not allowed", line())

    def forbid_entity(name: str, *_rest: object) -> None:
        _fail(IssueCode.XML_FORBIDDEN, f"entity declaration {name!r} is not allowed", line())

    def forbid_external(*_rest: object) -> int:
        _fail(IssueCode.XML_FORBIDDEN, "external entities are not allowed", line())

    def line() -> int:
        return parser.CurrentLineNumber

    parser.StartDoctypeDeclHandler = forbid_doctype
    parser.EntityDeclHandler = forbid_entity
    parser.UnparsedEntityDeclHandler = forbid_entity
    parser.NotationDeclHandler = forbid_entity
    parser.ExternalEntityRefHandler = forbid_external
    builder = _Builder(parser, limits, sink_for, capture)
    parser.StartNamespaceDeclHandler = builder.namespace_start
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.characters
    parser.CommentHandler = builder.other
    parser.ProcessingInstructionHandler = builder.other
    try:
        parser.Parse(utf8, True)
    except expat.ExpatError as exc:
        message = expat.ErrorString(exc.code) if exc.code is not None else str(exc)
        _fail(IssueCode.XML_MALFORMED, f"not well-formed XML: {message}", exc.lineno)
    builder.finish(len(utf8))
    if builder.root is None:  # pragma: no cover - expat refuses a document without an element
        _fail(IssueCode.XML_MALFORMED, "no root element")
    return ParsedXml(builder.root, utf8, transcoded_from)
