"""SIP messages: a strict datagram parser, serializer and typed header access.

This is the project's one interface to SIP message syntax (RFC 3261 §7, §20, §25). The parser
is the project's own: aiosipua 0.7.1's ``SipMessage.parse`` accepts all nineteen invalid
messages of RFC 4475 §3.1.2 (negative or oversized Content-Length, SIP/7.0, CSeq method
mismatch, 10-digit status codes …), so it cannot stand between the network and the engine.
The transactions and dialogs are the project's own plain objects too (``uas.py``, ``uac.py``,
``trunk.py``; docs/sip.md says why); aiosipua stays pinned behind :func:`to_aiosipua` /
:func:`from_aiosipua` as an independent second parser that the tests round-trip every accepted
message through. This is the only module that imports it.

Framing follows the datagram rules of RFC 3261 §18.3: octets beyond Content-Length are
dropped, a body shorter than Content-Length is an error. Every syntax problem raises
:class:`ParseError` with a reason; nothing else escapes :func:`parse`.

:func:`screen_request` adds the UAS checks of RFC 3261 §8.2 that need a well-formed message
(missing or repeated headers, URI scheme, Require, Content-Type, Accept) and says which
response to send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

SIP_VERSION = "SIP/2.0"
BRANCH_COOKIE = "z9hG4bK"
MAX_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5: the sequence number MUST be below 2**31
MAX_FORWARDS_LIMIT = 255
MAX_MESSAGE_BYTES = 65_535
MAX_HEADER_LINES = 256

TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")

COMPACT_FORMS = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "u": "allow-events",
    "x": "session-expires",
}

CANONICAL_NAMES = {
    name.lower(): name
    for name in (
        "Accept Accept-Encoding Accept-Language Alert-Info Allow Allow-Events "
        "Authentication-Info Authorization Call-ID Call-Info Contact Content-Disposition "
        "Content-Encoding Content-Language Content-Length Content-Type CSeq Date Error-Info "
        "Event Expires From In-Reply-To Max-Forwards MIME-Version Min-Expires Min-SE "
        "Organization Path Priority Proxy-Authenticate Proxy-Authorization Proxy-Require RAck "
        "Record-Route Refer-To Referred-By Reply-To Require Retry-After Route RSeq Server "
        "Session-Expires Subject Supported Timestamp To Unsupported User-Agent Via Warning "
        "WWW-Authenticate"
    ).split()
}

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1), so several lines combine.
LIST_HEADERS = frozenset(
    (
        "via contact route record-route accept accept-encoding accept-language allow supported "
        "require proxy-require unsupported content-encoding content-language in-reply-to "
        "allow-events path"
    ).split()
)
# Headers that may appear once only; a second copy makes the request unanswerable (400).
SINGLE_HEADERS = ("call-id", "cseq", "from", "to", "max-forwards", "content-type", "content-length")
REQUIRED_REQUEST_HEADERS = ("via", "from", "to", "call-id", "cseq")
ADDRESS_HEADERS = frozenset({"from", "to", "contact", "route", "record-route", "reply-to"})

_METHOD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:")
_DATE_RE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\Z")
_LWS_RE = re.compile(r"[ \t]+")
_SENT_BY_RE = re.compile(r"\s*SIP\s*/\s*\d+\.\d+\s*/\s*[A-Za-z]+\s+[^\s;,]+")


class ParseError(ValueError):
    """A message that is not valid SIP; ``reason`` says why, ``status`` what to answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# --------------------------------------------------------------------------- small values


@dataclass(slots=True)
class SipUri:
    """A SIP/SIPS URI split into parts (values stay %-escaped as on the wire)."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""  # the part after "?", kept raw

    def __str__(self) -> str:
        out = f"{self.scheme}:"
        if self.user is not None:
            out += self.user + (f":{self.password}" if self.password is not None else "") + "@"
        out += self.host + (f":{self.port}" if self.port is not None else "")
        for name, value in self.params.items():
            out += f";{name}" + (f"={value}" if value is not None else "")
        return out + (f"?{self.headers}" if self.headers else "")


def uri_scheme(uri: str) -> str:
    """The scheme of any absolute URI, lower-cased; ParseError if there is none."""
    match = _SCHEME_RE.match(uri)
    if not match:
        raise ParseError(f"not an absolute URI: {uri[:60]!r}")
    return match.group()[:-1].lower()


def parse_sip_uri(uri: str) -> SipUri:
    """Split a ``sip:``/``sips:`` URI into user, host, port, parameters and headers."""
    scheme = uri_scheme(uri)
    if scheme not in ("sip", "sips"):
        raise ParseError(f"not a SIP URI: {uri[:60]!r}", status=416)
    rest = uri[len(scheme) + 1 :]
    user = password = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        if not userinfo:
            raise ParseError(f"empty user part in {uri[:60]!r}")
        user, sep, pw = userinfo.partition(":")
        password = pw if sep else None
    rest, _, headers = rest.partition("?")
    hostport, *param_parts = rest.split(";")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ParseError(f"unterminated IPv6 reference in {uri[:60]!r}")
        host, port_text = hostport[: end + 1], hostport[end + 1 :].removeprefix(":")
    else:
        host, _, port_text = hostport.partition(":")
    if not host or any(ch in host for ch in ' \t<>"'):
        raise ParseError(f"bad host in {uri[:60]!r}")
    port = _port(port_text, uri) if port_text else None
    params: dict[str, str | None] = {}
    for part in param_parts:
        if not part:
            raise ParseError(f"empty URI parameter in {uri[:60]!r}")
        name, sep, value = part.partition("=")
        params[name.lower()] = value if sep else None
    return SipUri(scheme, user, password, host.lower(), port, params, headers)


def _port(text: str, context: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ParseError(f"bad port {text!r} in {context[:60]!r}")
    return int(text)


@dataclass(slots=True)
class Via:
    """One Via entry: ``SIP/2.0/<transport> host[:port];params``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def rfc3261_branch(self) -> bool:
        """True when the branch carries the RFC 3261 magic cookie plus a unique part."""
        branch = self.branch or ""
        return branch.startswith(BRANCH_COOKIE) and len(branch) > len(BRANCH_COOKIE)

    @property
    def sent_by(self) -> str:
        return self.host + (f":{self.port}" if self.port is not None else "")

    def __str__(self) -> str:
        return f"{SIP_VERSION}/{self.transport} {self.sent_by}" + _params_text(self.params)


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route value: display name, URI, header parameters."""

    uri: str
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False  # "Contact: *"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        name = ""
        if self.display_name is not None:
            escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            name = f'"{escaped}" '
        return f"{name}<{self.uri}>" + _params_text(self.params)


@dataclass(slots=True, frozen=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def _params_text(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" + (f"={v}" if v is not None else "") for k, v in params.items())


# --------------------------------------------------------------------------- value parsers


def _is_token(text: str) -> bool:
    return bool(text) and all(ch in TOKEN_CHARS for ch in text)


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted-string starting at ``text[start] == '"'``; return (content, next index)."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise ParseError(f"unterminated quoted string in {text[:60]!r}")


def split_list(value: str) -> list[str]:
    """Split a header value on commas outside quotes and angle brackets."""
    parts: list[str] = []
    start = 0
    depth = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == '"' and depth == 0:
            _, i = _read_quoted(value, i)
            continue
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return parts


def parse_params(text: str, context: str) -> dict[str, str | None]:
    """Parse ``;name[=value]`` parameters (LWS allowed around ``;`` and ``=``)."""
    params: dict[str, str | None] = {}
    text = text.strip()
    if not text:
        return params
    if not text.startswith(";"):
        raise ParseError(f"unexpected text {text[:40]!r} in {context}")
    i = 0
    while i < len(text):
        if text[i] != ";":
            raise ParseError(f"unexpected text {text[i : i + 40]!r} in {context}")
        i += 1
        j = i
        while j < len(text) and text[j] not in ";=":
            j += 1
        name = text[i:j].strip()
        if not _is_token(name):
            raise ParseError(f"empty or invalid parameter name {name!r} in {context}")
        value: str | None = None
        if j < len(text) and text[j] == "=":
            k = j + 1
            while k < len(text) and text[k] in " \t":
                k += 1
            if k < len(text) and text[k] == '"':
                value, k = _read_quoted(text, k)
                while k < len(text) and text[k] in " \t":
                    k += 1
            else:
                end = text.find(";", k)
                end = len(text) if end < 0 else end
                value = text[k:end].strip()
                if not value or any(ch in value for ch in ' \t,<>"'):
                    raise ParseError(f"bad value for parameter {name!r} in {context}")
                k = end
            j = k
        params[name.lower()] = value
        i = j
    return params


def parse_via(value: str) -> Via:
    """Parse one Via entry (LWS allowed around '/', as RFC 4475 §3.1.1.1 shows)."""
    head, sep, rest = value.partition(";")
    params = parse_params(sep + rest, "Via") if sep else {}
    protocol, _, sent_by = head.strip().rpartition("/")
    pieces = [p.strip() for p in protocol.split("/")]
    sent_by_parts = _LWS_RE.split(sent_by.strip(), maxsplit=1)
    if len(pieces) != 2 or len(sent_by_parts) != 2:
        raise ParseError(f"malformed Via {value[:60]!r}")
    transport, host_text = sent_by_parts
    pieces.append(transport)
    name, version, transport = pieces
    if name.upper() != "SIP" or version != "2.0":
        raise ParseError(f"unsupported protocol {name}/{version} in Via", status=505)
    if not _is_token(transport):
        raise ParseError(f"bad transport {transport!r} in Via")
    host_text = host_text.strip()
    if host_text.startswith("["):
        end = host_text.find("]")
        host, port_text = host_text[: end + 1], host_text[end + 1 :].removeprefix(":")
    else:
        host, _, port_text = host_text.partition(":")
    if not host or any(ch in host for ch in " \t"):
        raise ParseError(f"bad sent-by in Via {value[:60]!r}")
    port = _port(port_text.strip(), value) if port_text else None
    return Via(transport.upper(), host.lower(), port, params)


def parse_name_addr(value: str, *, allow_wildcard: bool = False) -> NameAddr:
    """Parse ``[display] <uri> ;params`` or a bare ``uri;params`` (RFC 3261 §20.10)."""
    text = value.strip()
    if allow_wildcard and text == "*":
        return NameAddr(uri="*", wildcard=True)
    display: str | None = None
    i = 0
    if text.startswith('"'):
        display, i = _read_quoted(text, 0)
        while i < len(text) and text[i] in " \t":
            i += 1
        if i >= len(text) or text[i] != "<":
            raise ParseError(f"quoted display name not followed by <URI> in {text[:60]!r}")
    lt = text.find("<", i)
    if lt >= 0 and (display is not None or '"' not in text[:lt]):
        if display is None:
            words = text[:lt].split()
            if not all(_is_token(w) for w in words):
                raise ParseError(f"display name must be tokens or quoted: {text[:lt]!r}")
            display = " ".join(words) if words else None
        gt = text.find(">", lt)
        if gt < 0:
            raise ParseError(f"unterminated <URI> in {text[:60]!r}")
        uri = text[lt + 1 : gt]
        if uri != uri.strip() or any(ch in uri for ch in " \t"):
            raise ParseError(f"whitespace inside <URI> in {text[:60]!r}")
        uri_scheme(uri)
        return NameAddr(uri, display, parse_params(text[gt + 1 :], "address"))
    # addr-spec form: the URI ends at the first ';', which starts header parameters
    uri, sep, rest = text.partition(";")
    uri = uri.strip()
    if not uri or any(ch in uri for ch in ' \t<>"?,'):
        raise ParseError(f"URI with '?', ',' or spaces must be enclosed in <>: {text[:60]!r}")
    uri_scheme(uri)
    return NameAddr(uri, None, parse_params(sep + rest, "address") if sep else {})


def parse_cseq(value: str, context: str = "CSeq") -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not _METHOD_RE.match(parts[1]):
        raise ParseError(f"malformed {context} {value[:60]!r}")
    seq = int(parts[0])
    if seq > MAX_CSEQ:
        raise ParseError(f"{context} number {parts[0][:20]} is not below 2**31")
    return CSeq(seq, parts[1])


# --------------------------------------------------------------------------- headers


def canonical_name(name: str) -> str:
    """Full, conventionally capitalised header name for any spelling or compact form."""
    lower = name.lower()
    lower = COMPACT_FORMS.get(lower, lower)
    return CANONICAL_NAMES.get(lower, name)


class Headers:
    """Header fields in wire order; lookup by any spelling or compact form."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in fields]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: str) -> bool:
        key = canonical_name(name).lower()
        return any(n.lower() == key for n, _ in self._fields)

    def lines(self, name: str) -> list[str]:
        """Every header line's value for ``name``, as written."""
        key = canonical_name(name).lower()
        return [v for n, v in self._fields if n.lower() == key]

    def get(self, name: str, default: str | None = None) -> str | None:
        lines = self.lines(name)
        return lines[0] if lines else default

    def values(self, name: str) -> list[str]:
        """All values of a list header, split on commas across lines."""
        out: list[str] = []
        for line in self.lines(name):
            out.extend(v for v in split_list(line) if v)
        return out

    def add(self, name: str, value: str) -> None:
        self._fields.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` with one line (at the first one's place)."""
        key = canonical_name(name).lower()
        for index, (n, _) in enumerate(self._fields):
            if n.lower() == key:
                self._fields[index] = (canonical_name(name), value)
                self._fields = [
                    f for i, f in enumerate(self._fields) if i <= index or f[0].lower() != key
                ]
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._fields = [f for f in self._fields if f[0].lower() != key]

    def copy(self) -> Headers:
        return Headers(self._fields)


# --------------------------------------------------------------------------- messages


@dataclass(slots=True)
class Message:
    """Fields and accessors common to requests and responses."""

    headers: Headers
    body: bytes

    @property
    def call_id(self) -> str | None:
        return self.headers.get("call-id")

    @property
    def cseq(self) -> CSeq:
        value = self.headers.get("cseq")
        if value is None:
            raise ParseError("missing CSeq")
        return parse_cseq(value)

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.values("via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.values("via")
        if not values:
            raise ParseError("missing Via")
        return parse_via(values[0])

    @property
    def from_(self) -> NameAddr:
        return self._address("from")

    @property
    def to(self) -> NameAddr:
        return self._address("to")

    @property
    def contacts(self) -> list[NameAddr]:
        return [parse_name_addr(v, allow_wildcard=True) for v in self.headers.values("contact")]

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("content-type")
        return value.split(";")[0].strip().lower() if value else None

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("max-forwards")
        return int(value) if value is not None else None

    @property
    def expires(self) -> int | None:
        """The Expires header in seconds, capped at 2**32-1 (RFC 3261 §25 delta-seconds)."""
        value = self.headers.get("expires")
        if value is None:
            return None
        if not value.strip().isdigit():
            raise ParseError(f"bad Expires {value[:30]!r}")
        return min(int(value.strip()), 2**32 - 1)

    def _address(self, name: str) -> NameAddr:
        value = self.headers.get(name)
        if value is None:
            raise ParseError(f"missing {canonical_name(name)}")
        return parse_name_addr(value)

    def _header_block(self, start_line: str) -> bytes:
        lines = [start_line]
        for name, value in self.headers:
            if name.lower() != "content-length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


@dataclass(slots=True)
class Request(Message):
    method: str = ""
    uri: str = ""

    def __bytes__(self) -> bytes:
        return self._header_block(f"{self.method} {self.uri} {SIP_VERSION}") + self.body


@dataclass(slots=True)
class Response(Message):
    status: int = 0
    reason: str = ""

    def __bytes__(self) -> bytes:
        return self._header_block(f"{SIP_VERSION} {self.status} {self.reason}") + self.body


def serialize(message: Request | Response) -> bytes:
    """Wire bytes with CRLF line ends and a Content-Length matching the body."""
    return bytes(message)


# --------------------------------------------------------------------------- parsing


def parse(data: bytes) -> Request | Response:
    """Parse one SIP message received as a datagram. Raises :class:`ParseError`."""
    try:
        return _parse(data)
    except ParseError:
        raise
    except (ValueError, IndexError, UnicodeError) as exc:  # defensive: report, never crash
        raise ParseError(f"malformed message ({type(exc).__name__}: {exc})") from exc


def _parse(data: bytes) -> Request | Response:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ParseError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}", 513)
    data = data.lstrip(b"\r\n")  # RFC 3261 §7.5: ignore CRLFs before the start line
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
        if not sep:  # the datagram ends after the headers: no body
            head, body = data.rstrip(b"\r\n"), b""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"headers are not UTF-8 (byte {exc.start})") from exc
    raw_lines = text.replace("\r\n", "\n").split("\n")
    if any("\r" in line for line in raw_lines):
        raise ParseError("bare CR inside a line")
    start_line, header_lines = raw_lines[0], _unfold(raw_lines[1:])
    is_response = start_line.startswith("SIP/")
    if is_response:
        status, reason = _parse_status_line(start_line)
    else:
        method, uri = _parse_request_line(start_line)
    headers = Headers(_split_header(line) for line in header_lines)
    _check_headers(headers)
    body = _frame_body(headers, body)

    if is_response:
        message: Request | Response = Response(headers, body, status, reason)
    else:
        message = Request(headers, body, method, uri)
        cseq_value = headers.get("cseq")
        if cseq_value is not None and parse_cseq(cseq_value).method != method:
            raise ParseError(f"CSeq method {parse_cseq(cseq_value).method!r} != {method!r}")
    return message


def _unfold(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not out:
                raise ParseError("continuation line before any header")
            out[-1] += " " + line.strip()
        elif line:
            out.append(line)
    if len(out) > MAX_HEADER_LINES:
        raise ParseError(f"more than {MAX_HEADER_LINES} header lines")
    return out


def _split_header(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    name = name.rstrip(" \t")
    if not sep or not _is_token(name):
        raise ParseError(f"malformed header line {line[:60]!r}")
    return name, value.strip()


def _parse_request_line(line: str) -> tuple[str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise ParseError(f"request line must be 'METHOD SP URI SP SIP/2.0': {line[:80]!r}")
    method, uri, version = parts
    if version != SIP_VERSION:
        raise ParseError(f"unsupported version {version[:20]!r}", status=505)
    if not _METHOD_RE.match(method):
        raise ParseError(f"bad method {method[:30]!r}")
    if uri.startswith("<"):
        raise ParseError("Request-URI must not be enclosed in <>")
    if not all("!" <= ch <= "~" for ch in uri):
        raise ParseError("Request-URI contains control or non-ASCII characters")
    scheme = uri_scheme(uri)
    if scheme in ("sip", "sips") and parse_sip_uri(uri).headers:
        raise ParseError("Request-URI must not carry headers ('?')")
    return method, uri


def _parse_status_line(line: str) -> tuple[int, str]:
    version, _, rest = line.partition(" ")
    if version != SIP_VERSION:
        raise ParseError(f"unsupported version {version[:20]!r}")
    code, _, reason = rest.partition(" ")
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
        raise ParseError(f"status code must be three digits 100-699: {rest[:30]!r}")
    return int(code), reason


def _frame_body(headers: Headers, body: bytes) -> bytes:
    lengths = headers.lines("content-length")
    if not lengths:
        return body  # datagram: the body is the rest of the packet
    if len(set(v.strip() for v in lengths)) > 1:
        raise ParseError(f"conflicting Content-Length values {lengths}")
    text = lengths[0].strip()
    if not text.isdigit():
        raise ParseError(f"Content-Length must be a non-negative integer: {text[:20]!r}")
    declared = int(text)
    if declared > len(body):
        raise ParseError(f"Content-Length {declared} exceeds the {len(body)} bytes received")
    return body[:declared]


def _check_headers(headers: Headers) -> None:
    """Validate the structure of the headers the engine interprets."""
    for name, value in headers:
        key = name.lower()
        if key == "via":
            for entry in split_list(value):
                if not entry:
                    raise ParseError(f"empty Via entry in {value[:60]!r}")
                parse_via(entry)
        elif key in ("from", "to"):
            parse_name_addr(value)
        elif key in ADDRESS_HEADERS:
            for entry in split_list(value):
                parse_name_addr(entry, allow_wildcard=key == "contact")
        elif key == "cseq":
            parse_cseq(value)
        elif key == "max-forwards":
            if not value.isdigit() or int(value) > MAX_FORWARDS_LIMIT:
                raise ParseError(f"Max-Forwards must be 0-{MAX_FORWARDS_LIMIT}: {value[:20]!r}")
        elif key == "date":
            if not _DATE_RE.match(value):
                raise ParseError(f"Date must be an RFC 1123 date in GMT: {value[:40]!r}")
        elif key == "call-id" and not value:
            raise ParseError("empty Call-ID")


# --------------------------------------------------------------------------- UAS screening


@dataclass(slots=True, frozen=True)
class Rejection:
    """The response a UAS owes a request it will not process."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


SUPPORTED_SCHEMES = ("sip", "sips", "tel")
SUPPORTED_EXTENSIONS = frozenset({"replaces", "timer", "100rel", "path", "outbound"})
ACCEPTED_BODY_TYPES = frozenset({"application/sdp"})
BODY_METHODS = frozenset({"INVITE", "UPDATE", "PRACK"})  # methods whose body the engine reads


def screen_request(
    request: Request,
    *,
    supported: frozenset[str] = SUPPORTED_EXTENSIONS,
    body_types: frozenset[str] = ACCEPTED_BODY_TYPES,
) -> Rejection | None:
    """UAS checks of RFC 3261 §8.2.2–8.2.3 on a parsed request; None means go ahead."""
    try:
        return _screen(request, supported, body_types)
    except ParseError as exc:  # e.g. an unbalanced quote in a header the parser keeps raw
        return Rejection(400, exc.reason[:100])


def _screen(
    request: Request, supported: frozenset[str], body_types: frozenset[str]
) -> Rejection | None:
    missing = [canonical_name(h) for h in REQUIRED_REQUEST_HEADERS if h not in request.headers]
    if missing:
        return Rejection(400, f"Missing {', '.join(missing)}")
    repeated = [
        canonical_name(h)
        for h in SINGLE_HEADERS
        if len(request.headers.lines(h)) > 1
        or (h not in ("from", "to") and len(request.headers.values(h)) > 1)
    ]
    if repeated:
        return Rejection(400, f"Repeated {', '.join(repeated)}")
    if uri_scheme(request.uri) not in SUPPORTED_SCHEMES:
        return Rejection(416, "Unsupported URI Scheme")
    if request.method not in ("ACK", "CANCEL"):
        unknown = [tag for tag in request.headers.values("require") if tag.lower() not in supported]
        if unknown:
            return Rejection(420, "Bad Extension", (("Unsupported", ", ".join(unknown)),))
    if request.method in BODY_METHODS and request.body and request.content_type not in body_types:
        return Rejection(
            415, "Unsupported Media Type", (("Accept", ", ".join(sorted(body_types))),)
        )
    if request.method in ("INVITE", "OPTIONS") and "accept" in request.headers:
        accepted = {v.split(";")[0].strip().lower() for v in request.headers.values("accept")}
        if accepted and not accepted & {"application/sdp", "application/*", "*/*"}:
            return Rejection(406, "Not Acceptable")
    return None


def transaction_key(request: Request) -> tuple[Any, ...]:
    """Key matching a request to its server transaction (RFC 3261 §17.2.3).

    With an RFC 3261 branch: branch, sent-by and method (ACK and CANCEL are matched to the
    INVITE by the caller). Without one (RFC 2543 peers, RFC 4475 §3.2.1): Request-URI, To tag,
    From tag, Call-ID, CSeq and the top Via.
    """
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    if via.rfc3261_branch:
        return ("3261", via.branch, via.sent_by, method)
    cseq = request.cseq
    return (
        "2543",
        request.uri,
        request.to.tag,
        request.from_.tag,
        request.call_id,
        cseq.seq,
        "INVITE" if cseq.method == "ACK" else cseq.method,
        str(via),
    )


def response_to(request: Request, status: int, reason: str, to_tag: str | None = None) -> Response:
    """A response copying Via, From, To (adding ``to_tag``), Call-ID and CSeq (§8.2.6.2)."""
    headers = Headers()
    for value in request.headers.lines("via"):
        headers.add("Via", value)
    headers.add("From", request.headers.get("from") or "")
    to_value = request.headers.get("to") or ""
    if to_tag and status > 100 and "tag" not in parse_name_addr(to_value).params:
        to_value += f";tag={to_tag}"
    headers.add("To", to_value)
    headers.add("Call-ID", request.call_id or "")
    headers.add("CSeq", request.headers.get("cseq") or "")
    return Response(headers, b"", status, reason)


def stamp_source(via: Via, host: str, port: int) -> Via:
    """The top Via as a UAS returns it: ``received`` when the packet came from another
    address than sent-by (RFC 3261 §18.2.1), ``rport`` filled in when asked (RFC 3581)."""
    params = dict(via.params)
    if via.host != host.lower() or "rport" in params:
        params["received"] = host
    if "rport" in params:
        params["rport"] = str(port)
    return Via(via.transport, via.host, via.port, params)


STATUS_REASONS = {400: "Bad Request", 505: "Version Not Supported", 513: "Message Too Large"}
ECHOED_HEADERS = ("via", "from", "to", "call-id", "cseq")


def error_response(data: bytes, error: ParseError) -> bytes | None:
    """Best-effort answer to a request that failed to parse, or None when none can be formed.

    RFC 4475 §3.1.2: answer 400 (or ``error.status``) where Via, From, To, Call-ID and CSeq
    can be found to copy, drop silently otherwise (and always for responses).
    """
    try:
        head = data.lstrip(b"\r\n").split(b"\r\n\r\n", 1)[0].decode("utf-8", errors="replace")
        lines = head.replace("\r\n", "\n").split("\n")
        if not lines[0] or lines[0].startswith("SIP/"):
            return None
        found: dict[str, list[str]] = {}
        for line in _unfold(lines[1:]):
            name, sep, value = line.partition(":")
            key = canonical_name(name.strip()).lower()
            if sep and key in ECHOED_HEADERS:
                found.setdefault(key, []).append(value.strip())
        if any(key not in found for key in ECHOED_HEADERS):
            return None
        if not _SENT_BY_RE.match(found["via"][0]):  # the response must be routable
            return None
    except ParseError:
        return None
    headers = Headers()
    for key in ECHOED_HEADERS:
        for value in found[key]:
            headers.add(key, value)
    warning = error.reason.replace('"', "'")[:200]
    headers.add("Warning", f'399 engine "{warning}"')
    status = error.status if error.status in STATUS_REASONS else 400
    return serialize(Response(headers, b"", status, STATUS_REASONS[status]))


# --------------------------------------------------------------------------- aiosipua bridge


def to_aiosipua(message: Request | Response) -> Any:
    """The same message as an aiosipua ``SipRequest``/``SipResponse`` for its transaction layer."""
    from aiosipua.message import SipMessage  # the one import of aiosipua's message model

    return SipMessage.parse(serialize(message))


def from_aiosipua(message: Any) -> Request | Response:
    """Re-parse a message built by aiosipua through this module's strict parser."""
    return parse(bytes(message))
