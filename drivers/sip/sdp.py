"""SDP for G.711 audio calls: parse, serialize, and the offer/answer rules of RFC 3264.

The engine speaks PCMU (payload type 0), PCMA (8) and RFC 4733 telephone-event (a dynamic
payload type at 8000 Hz, events 0-15) with 20 ms packets. :func:`answer_offer` turns a remote
offer into the engine's answer plus a :class:`MediaPlan` (codec, payload types, where to send,
which direction media flows — hold and resume are direction changes); when no audio stream can
be served it raises :class:`OfferRejected`, which the UAS answers with 488 Not Acceptable Here.
:func:`make_offer` and :func:`accept_answer` are the other side, for legs the engine places.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

STATIC_PAYLOAD_TYPES = {0: ("PCMU", 8000), 8: ("PCMA", 8000)}
TELEPHONE_EVENT = "telephone-event"
TELEPHONE_EVENT_RANGE = "0-15"
DEFAULT_EVENT_PT = 101
PTIME_MS = 20
AUDIO_PROFILES = ("RTP/AVP",)
HOLD_ADDRESSES = ("0.0.0.0", "::")  # RFC 2543 hold: c= set to an unspecified address


class SdpError(ValueError):
    """The body is not valid SDP for this engine (the UAS answers 400)."""


class OfferRejected(Exception):
    """No offered audio stream can be served: answer 488 Not Acceptable Here."""

    status = 488
    status_reason = "Not Acceptable Here"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Direction(enum.StrEnum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, sends: bool, receives: bool) -> Direction:
        if sends and receives:
            return cls.SENDRECV
        if sends:
            return cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reversed(self) -> Direction:
        """The same stream seen from the other end."""
        return Direction.of(sends=self.receives, receives=self.sends)


@dataclass(slots=True)
class Media:
    """One m= section with its own c= and attributes."""

    kind: str  # "audio", "video", …
    port: int
    profile: str  # "RTP/AVP"
    formats: list[str]
    connection: str | None = None  # media-level c= address
    rtpmap: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # pt -> name, rate, ch
    fmtp: dict[int, str] = field(default_factory=dict)
    direction: Direction | None = None
    ptime: int | None = None
    attributes: list[str] = field(default_factory=list)  # every other a= line, as written
    address_type: str = "IP4"

    def codec(self, payload_type: int) -> tuple[str, int, int] | None:
        """(encoding name, clock rate, channels) of a payload type, static ones included."""
        if payload_type in self.rtpmap:
            return self.rtpmap[payload_type]
        if payload_type in STATIC_PAYLOAD_TYPES:
            name, rate = STATIC_PAYLOAD_TYPES[payload_type]
            return name, rate, 1
        return None

    def payload_types(self) -> list[int]:
        return [int(f) for f in self.formats if f.isdigit()]


@dataclass(slots=True)
class Session:
    """A session description (RFC 4566)."""

    origin_user: str
    session_id: int
    session_version: int
    origin_address: str
    name: str = "-"
    connection: str | None = None  # session-level c= address
    direction: Direction | None = None  # session-level direction attribute
    media: list[Media] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    address_type: str = "IP4"
    timing: str = "0 0"

    def media_connection(self, media: Media) -> str:
        address = media.connection or self.connection
        if address is None:
            raise SdpError(f"no c= line for the {media.kind} stream")
        return address

    def media_direction(self, media: Media) -> Direction:
        return media.direction or self.direction or Direction.SENDRECV


# --------------------------------------------------------------------------- parse / serialize


def parse_sdp(body: bytes | str) -> Session:
    """Parse an SDP body. Raises :class:`SdpError` with the offending line."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    session: Session | None = None
    current: Media | None = None
    name = "-"
    pending_connection: tuple[str, str] | None = None
    timing = "0 0"
    pending_attributes: list[str] = []
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"malformed SDP line {line[:60]!r}")
        key, value = line[0], line[2:]
        if key == "o":
            parts = value.split()
            if len(parts) != 6 or not parts[1].isdigit() or not parts[2].isdigit():
                raise SdpError(f"malformed o= line {value[:60]!r}")
            session = Session(
                parts[0], int(parts[1]), int(parts[2]), parts[5], address_type=parts[4]
            )
        elif key == "s":
            name = value
        elif key == "t":
            timing = value
        elif key == "c":
            address_type, address = _parse_connection(value)
            if current is not None:
                current.connection, current.address_type = address, address_type
            else:
                pending_connection = (address_type, address)
        elif key == "m":
            current = _parse_media_line(value)
            if session is None:
                raise SdpError("m= line before o= line")
            session.media.append(current)
        elif key == "a":
            if current is None:
                pending_attributes.append(value)
            else:
                _media_attribute(current, value)
        # b=, i=, u=, e=, p=, k=, z=, r= lines carry nothing the engine uses
    if session is None:
        raise SdpError("missing o= line")
    session.name, session.timing = name, timing
    if pending_connection:
        session.address_type, session.connection = pending_connection
    for attribute in pending_attributes:
        if attribute in Direction.__members__.values():
            session.direction = Direction(attribute)
        else:
            session.attributes.append(attribute)
    return session


def _parse_connection(value: str) -> tuple[str, str]:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"malformed c= line {value[:60]!r}")
    return parts[1], parts[2].split("/")[0]  # drop a multicast TTL


def _parse_media_line(value: str) -> Media:
    parts = value.split()
    if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
        raise SdpError(f"malformed m= line {value[:60]!r}")
    port = int(parts[1].split("/")[0])
    if port > 65535:
        raise SdpError(f"port {port} out of range in m= line")
    return Media(parts[0], port, parts[2], parts[3:])


def _media_attribute(media: Media, value: str) -> None:
    name, _, rest = value.partition(":")
    if value in Direction.__members__.values():
        media.direction = Direction(value)
    elif name == "rtpmap":
        pt_text, _, encoding = rest.partition(" ")
        pieces = encoding.strip().split("/")
        if not pt_text.isdigit() or len(pieces) < 2 or not pieces[1].isdigit():
            if media.kind != "audio":  # a stream the engine declines anyway (RFC 4475 esc01)
                media.attributes.append(value)
                return
            raise SdpError(f"malformed rtpmap {rest[:60]!r}")
        channels = int(pieces[2]) if len(pieces) > 2 and pieces[2].isdigit() else 1
        media.rtpmap[int(pt_text)] = (pieces[0], int(pieces[1]), channels)
    elif name == "fmtp":
        pt_text, _, params = rest.partition(" ")
        if pt_text.isdigit():
            media.fmtp[int(pt_text)] = params.strip()
    elif name == "ptime" and rest.strip().isdigit():
        media.ptime = int(rest.strip())
    else:
        media.attributes.append(value)


def serialize_sdp(session: Session) -> bytes:
    """SDP text with CRLF line ends."""
    lines = [
        "v=0",
        f"o={session.origin_user} {session.session_id} {session.session_version} IN "
        f"{session.address_type} {session.origin_address}",
        f"s={session.name}",
    ]
    if session.connection:
        lines.append(f"c=IN {session.address_type} {session.connection}")
    lines.append(f"t={session.timing}")
    if session.direction:
        lines.append(f"a={session.direction}")
    lines.extend(f"a={a}" for a in session.attributes)
    for media in session.media:
        lines.append(f"m={media.kind} {media.port} {media.profile} {' '.join(media.formats)}")
        if media.connection:
            lines.append(f"c=IN {media.address_type} {media.connection}")
        for pt in media.payload_types():
            if pt in media.rtpmap:
                name, rate, channels = media.rtpmap[pt]
                lines.append(
                    f"a=rtpmap:{pt} {name}/{rate}" + (f"/{channels}" if channels != 1 else "")
                )
            if pt in media.fmtp:
                lines.append(f"a=fmtp:{pt} {media.fmtp[pt]}")
        if media.ptime:
            lines.append(f"a=ptime:{media.ptime}")
        lines.extend(f"a={a}" for a in media.attributes)
        if media.direction:
            lines.append(f"a={media.direction}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


# --------------------------------------------------------------------------- offer / answer


@dataclass(slots=True, frozen=True)
class MediaPlan:
    """What the media plane does for a call after offer/answer."""

    codec: str  # "PCMU" | "PCMA"
    payload_type: int  # of the codec
    event_payload_type: int | None  # telephone-event, None: fall back to in-band DTMF
    remote_address: str
    remote_port: int
    direction: Direction  # the engine's side: sendrecv, or a hold direction
    ptime: int = PTIME_MS

    @property
    def on_hold(self) -> bool:
        """The far end put the call on hold (the engine must not expect its audio)."""
        return not self.direction.receives

    @property
    def encoding(self) -> str:
        """Key of the pre-encoded prompt cache (``Playable.encoded``)."""
        return self.codec.lower()


def answer_offer(
    offer: Session,
    *,
    local_address: str,
    local_port: int,
    session_id: int,
    session_version: int = 1,
    codecs: tuple[str, ...] = ("PCMA", "PCMU"),
    local_direction: Direction = Direction.SENDRECV,
    telephone_event: bool = True,
) -> tuple[Session, MediaPlan]:
    """The engine's answer to ``offer`` and the media plan it commits to.

    The first audio stream the engine can serve is accepted; every other stream is declined
    with port 0 (RFC 3264 §6). Among that stream's codecs the offerer's order wins, limited to
    ``codecs``. ``local_direction`` is what the engine wants (``sendonly`` to put the caller on
    hold); the answer is that intersected with the reverse of the offer's direction.
    """
    answer = Session("-", session_id, session_version, local_address, connection=local_address)
    if ":" in local_address:
        answer.address_type = "IP6"
    plan: MediaPlan | None = None
    reasons: list[str] = []
    for media in offer.media:
        if plan is None:
            try:
                accepted, plan = _accept_audio(
                    offer, media, local_port, codecs, local_direction, telephone_event
                )
                answer.media.append(accepted)
                continue
            except OfferRejected as exc:
                reasons.append(exc.reason)
        answer.media.append(Media(media.kind, 0, media.profile, media.formats[:1]))
    if plan is None:
        raise OfferRejected("; ".join(reasons) or "no media stream offered")
    return answer, plan


def _accept_audio(
    offer: Session,
    media: Media,
    local_port: int,
    codecs: tuple[str, ...],
    local_direction: Direction,
    telephone_event: bool,
) -> tuple[Media, MediaPlan]:
    if media.kind != "audio":
        raise OfferRejected(f"{media.kind} stream not served")
    if media.port == 0:
        raise OfferRejected("audio stream declined by the offerer (port 0)")
    if media.profile not in AUDIO_PROFILES:
        raise OfferRejected(f"audio profile {media.profile} not supported")
    wanted = {c.upper() for c in codecs}
    chosen: tuple[int, str] | None = None
    event_pt: int | None = None
    for pt in media.payload_types():
        codec = media.codec(pt)
        if codec is None:
            continue
        name, rate, channels = codec
        if chosen is None and name.upper() in wanted and rate == 8000 and channels == 1:
            chosen = (pt, name.upper())
        elif name.lower() == TELEPHONE_EVENT and rate == 8000 and event_pt is None:
            event_pt = pt
    if chosen is None:
        offered = ", ".join(
            f"{(media.codec(pt) or ('?',))[0]}({pt})" for pt in media.payload_types()
        )
        raise OfferRejected(
            f"no common audio codec (offered {offered}; served {', '.join(codecs)})"
        )
    if not telephone_event:
        event_pt = None
    pt, name = chosen
    address = offer.media_connection(media)
    remote_direction = offer.media_direction(media)
    direction = Direction.of(
        sends=local_direction.sends and remote_direction.receives,
        receives=local_direction.receives and remote_direction.sends,
    )
    if address in HOLD_ADDRESSES:  # old-style hold: nothing may be sent to that address
        direction = Direction.of(sends=False, receives=direction.receives)
    formats = [str(pt)] + ([str(event_pt)] if event_pt is not None else [])
    accepted = Media(
        "audio", local_port, media.profile, formats, ptime=PTIME_MS, direction=direction
    )
    accepted.rtpmap[pt] = (name, 8000, 1)
    if event_pt is not None:
        accepted.rtpmap[event_pt] = (TELEPHONE_EVENT, 8000, 1)
        accepted.fmtp[event_pt] = TELEPHONE_EVENT_RANGE
    plan = MediaPlan(name, pt, event_pt, address, media.port, direction)
    return accepted, plan


def make_offer(
    *,
    local_address: str,
    local_port: int,
    session_id: int,
    session_version: int = 1,
    codecs: tuple[str, ...] = ("PCMA", "PCMU"),
    event_payload_type: int | None = DEFAULT_EVENT_PT,
    direction: Direction = Direction.SENDRECV,
) -> Session:
    """An offer for a leg the engine places (B2BUA outbound, re-INVITE for hold/resume)."""
    static = {name: pt for pt, (name, _) in STATIC_PAYLOAD_TYPES.items()}
    media = Media("audio", local_port, "RTP/AVP", [], ptime=PTIME_MS, direction=direction)
    for name in codecs:
        pt = static[name.upper()]
        media.formats.append(str(pt))
        media.rtpmap[pt] = (name.upper(), 8000, 1)
    if event_payload_type is not None:
        media.formats.append(str(event_payload_type))
        media.rtpmap[event_payload_type] = (TELEPHONE_EVENT, 8000, 1)
        media.fmtp[event_payload_type] = TELEPHONE_EVENT_RANGE
    session = Session("-", session_id, session_version, local_address, connection=local_address)
    session.media.append(media)
    return session


def accept_answer(offer: Session, answer: Session) -> MediaPlan:
    """The media plan from the answer to an offer the engine made."""
    if len(answer.media) != len(offer.media):
        raise SdpError("answer does not have one m= line per offered m= line")
    for sent, media in zip(offer.media, answer.media, strict=True):
        if sent.kind != "audio" or media.port == 0:
            continue
        offered = set(sent.payload_types())
        codec_pt = event_pt = None
        for pt in media.payload_types():
            codec = media.codec(pt) or sent.codec(pt)
            if codec is None or pt not in offered:
                continue
            if codec[0].lower() == TELEPHONE_EVENT:
                event_pt = pt if event_pt is None else event_pt
            elif codec_pt is None and codec[0].upper() in ("PCMU", "PCMA"):
                codec_pt = pt
        if codec_pt is None:
            raise OfferRejected("answer selected no offered codec")
        codec_name = (media.codec(codec_pt) or sent.codec(codec_pt) or ("?",))[0].upper()
        local = sent.direction or offer.direction or Direction.SENDRECV
        remote = answer.media_direction(media)
        direction = Direction.of(
            sends=local.sends and remote.receives, receives=local.receives and remote.sends
        )
        address = answer.media_connection(media)
        return MediaPlan(codec_name, codec_pt, event_pt, address, media.port, direction)
    raise OfferRejected("answer accepted no audio stream")
