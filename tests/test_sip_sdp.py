"""SDP offer/answer with offers written the way real phones send them."""

from __future__ import annotations

import random

import pytest

from drivers.sip.sdp import (
    Direction,
    OfferRejected,
    SdpError,
    accept_answer,
    answer_offer,
    make_offer,
    parse_sdp,
    serialize_sdp,
)

# baresip 1.0 (audio codecs g711 + opus loaded), as in its INVITE bodies
BARESIP_OFFER = (
    "v=0\r\n"
    "o=- 1955843914 3287125337 IN IP4 192.168.1.21\r\n"
    "s=-\r\n"
    "c=IN IP4 192.168.1.21\r\n"
    "t=0 0\r\n"
    "a=tool:baresip 1.0.0\r\n"
    "m=audio 10418 RTP/AVP 96 0 8 101\r\n"
    "b=AS:128\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 stereo=1;sprop-stereo=1\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=rtcp-rsize\r\n"
    "a=sendrecv\r\n"
    "a=label:1\r\n"
    "a=ssrc:2591893711 cname:9b2bd3a1-8cd3-4d2a-9a0a-3c9a3d8a1f44\r\n"
    "a=ptime:20\r\n"
)

# Linphone 4/5 desktop: static PTs without rtpmap, telephone-event at three rates, video
LINPHONE_OFFER = (
    "v=0\r\n"
    "o=agent7 1833 3048 IN IP4 10.20.0.57\r\n"
    "s=Talk\r\n"
    "c=IN IP4 10.20.0.57\r\n"
    "t=0 0\r\n"
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n"
    "m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 useinbandfec=1\r\n"
    "a=rtpmap:97 speex/16000\r\n"
    "a=fmtp:97 vbr=on\r\n"
    "a=rtpmap:98 speex/8000\r\n"
    "a=fmtp:98 vbr=on\r\n"
    "a=fmtp:18 annexb=yes\r\n"
    "a=rtpmap:101 telephone-event/48000\r\n"
    "a=rtpmap:99 telephone-event/16000\r\n"
    "a=rtpmap:100 telephone-event/8000\r\n"
    "a=rtcp-fb:* trr-int 1000\r\n"
    "a=rtcp-fb:* ccm tmmbr\r\n"
    "m=video 9078 RTP/AVP 96 97\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
    "a=rtpmap:97 H264/90000\r\n"
    "a=fmtp:97 profile-level-id=42801F\r\n"
)

# pyVoIP 1.6.8 (SIPClient.gen_invite / gen_answer layout)
PYVOIP_OFFER = (
    "v=0\r\n"
    "o=pyVoIP 1700000000 1700000002 IN IP4 172.17.0.5\r\n"
    "s=pyVoIP 1.6.8\r\n"
    "c=IN IP4 172.17.0.5\r\n"
    "t=0 0\r\n"
    "m=audio 10000 RTP/AVP 0 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=maxptime:150\r\n"
    "a=sendrecv\r\n"
)


def answer(offer: str, **kwargs):
    return answer_offer(
        parse_sdp(offer.encode()),
        local_address="10.1.1.1",
        local_port=30000,
        session_id=42,
        **kwargs,
    )


def test_baresip_offer_prefers_its_own_order_among_served_codecs() -> None:
    sdp, plan = answer(BARESIP_OFFER)
    assert (plan.codec, plan.payload_type, plan.event_payload_type) == ("PCMU", 0, 101)
    assert (plan.remote_address, plan.remote_port) == ("192.168.1.21", 10418)
    assert plan.direction is Direction.SENDRECV and not plan.on_hold
    text = serialize_sdp(sdp).decode()
    assert "m=audio 30000 RTP/AVP 0 101\r\n" in text
    assert "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n" in text
    assert "a=ptime:20\r\n" in text and "c=IN IP4 10.1.1.1\r\n" in text


def test_engine_preference_applies_only_to_what_is_offered() -> None:
    _, plan = answer(BARESIP_OFFER, codecs=("PCMA",))
    assert (plan.codec, plan.payload_type, plan.encoding) == ("PCMA", 8, "pcma")


def test_linphone_offer_picks_8khz_telephone_event_and_declines_video() -> None:
    sdp, plan = answer(LINPHONE_OFFER)
    assert (plan.codec, plan.event_payload_type) == ("PCMU", 100)
    audio, video = sdp.media
    assert audio.formats == ["0", "100"] and audio.port == 30000
    assert video.kind == "video" and video.port == 0
    again = parse_sdp(serialize_sdp(sdp))
    assert [m.port for m in again.media] == [30000, 0]


def test_pyvoip_offer_pcmu_only() -> None:
    _, plan = answer(PYVOIP_OFFER)
    assert (plan.codec, plan.payload_type, plan.event_payload_type) == ("PCMU", 0, 101)
    with pytest.raises(OfferRejected) as caught:
        answer(PYVOIP_OFFER, codecs=("PCMA",))
    assert caught.value.status == 488 and "no common audio codec" in caught.value.reason


def test_no_common_codec_is_488() -> None:
    offer = BARESIP_OFFER.replace("RTP/AVP 96 0 8 101", "RTP/AVP 96 101")
    with pytest.raises(OfferRejected, match="opus"):
        answer(offer)


def test_video_only_and_secure_profiles_are_488() -> None:
    video_only = LINPHONE_OFFER.split("m=audio")[0] + "m=video" + LINPHONE_OFFER.split("m=video")[1]
    with pytest.raises(OfferRejected, match="video stream not served"):
        answer(video_only)
    with pytest.raises(OfferRejected, match="RTP/SAVP"):
        answer(PYVOIP_OFFER.replace("RTP/AVP", "RTP/SAVP"))


def test_without_telephone_event_falls_back_to_in_band() -> None:
    offer = PYVOIP_OFFER.replace(" 0 101", " 0").replace(
        "a=rtpmap:101 telephone-event/8000\r\n", ""
    )
    sdp, plan = answer(offer)
    assert plan.event_payload_type is None
    assert sdp.media[0].formats == ["0"]
    _, plan = answer(BARESIP_OFFER, telephone_event=False)
    assert plan.event_payload_type is None


@pytest.mark.parametrize(
    ("offered", "answered", "on_hold"),
    [
        ("sendrecv", Direction.SENDRECV, False),
        ("sendonly", Direction.RECVONLY, False),  # the phone holds: it sends music, we listen
        ("recvonly", Direction.SENDONLY, True),
        ("inactive", Direction.INACTIVE, True),
    ],
)
def test_hold_and_resume_directions(offered: str, answered: Direction, on_hold: bool) -> None:
    sdp, plan = answer(BARESIP_OFFER.replace("a=sendrecv", f"a={offered}"))
    assert plan.direction is answered and sdp.media[0].direction is answered
    assert plan.on_hold is on_hold
    assert f"a={answered}\r\n" in serialize_sdp(sdp).decode()


def test_session_level_direction_and_old_style_hold() -> None:
    offer = PYVOIP_OFFER.replace("a=sendrecv\r\n", "").replace(
        "t=0 0\r\n", "t=0 0\r\na=sendonly\r\n"
    )
    _, plan = answer(offer)
    assert plan.direction is Direction.RECVONLY
    _, plan = answer(PYVOIP_OFFER.replace("c=IN IP4 172.17.0.5", "c=IN IP4 0.0.0.0"))
    assert not plan.direction.sends


def test_engine_holding_the_caller() -> None:
    _, plan = answer(BARESIP_OFFER, local_direction=Direction.SENDONLY)
    assert plan.direction is Direction.SENDONLY


def test_media_level_connection_overrides_session_level() -> None:
    offer = BARESIP_OFFER.replace("b=AS:128\r\n", "c=IN IP4 203.0.113.9\r\n")
    _, plan = answer(offer)
    assert plan.remote_address == "203.0.113.9"
    with pytest.raises(SdpError, match="no c= line"):
        answer(BARESIP_OFFER.replace("c=IN IP4 192.168.1.21\r\n", ""))


@pytest.mark.parametrize(
    "body",
    [
        "",
        "v=1\r\n",
        "v=0\r\nm=audio 1 RTP/AVP 0\r\n",
        "v=0\r\no=- x 1 IN IP4 a\r\n",
        "v=0\r\no=- 1 1 IN IP4 a\r\nc=IN IP9 a\r\n",
        "v=0\r\no=- 1 1 IN IP4 a\r\nm=audio x RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 a\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:x PCMU\r\n",
        "v=0\r\nbogus\r\n",
    ],
)
def test_malformed_sdp_raises_sdp_error(body: str) -> None:
    with pytest.raises(SdpError):
        parse_sdp(body)


def test_offer_and_answer_for_an_outbound_leg() -> None:
    offer = make_offer(local_address="10.1.1.1", local_port=30002, session_id=7)
    text = serialize_sdp(offer).decode()
    assert "m=audio 30002 RTP/AVP 8 0 101\r\n" in text and "a=sendrecv\r\n" in text
    # the seat (baresip) answers with PCMA and telephone-event
    remote_answer = parse_sdp(
        "v=0\r\no=- 1 2 IN IP4 192.168.1.30\r\ns=-\r\nc=IN IP4 192.168.1.30\r\nt=0 0\r\n"
        "m=audio 10500 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    )
    plan = accept_answer(offer, remote_answer)
    assert (plan.codec, plan.payload_type, plan.event_payload_type) == ("PCMA", 8, 101)
    assert (plan.remote_address, plan.remote_port, plan.direction) == (
        "192.168.1.30",
        10500,
        Direction.SENDRECV,
    )
    hold = make_offer(
        local_address="10.1.1.1",
        local_port=30002,
        session_id=7,
        session_version=2,
        direction=Direction.SENDONLY,
    )
    held = accept_answer(
        hold, parse_sdp(serialize_sdp(remote_answer).decode().replace("sendrecv", "recvonly"))
    )
    assert held.direction is Direction.SENDONLY


def test_engine_answer_accepted_by_its_own_offer_logic() -> None:
    offer = make_offer(local_address="10.1.1.1", local_port=30004, session_id=9)
    sdp, plan = answer_offer(
        parse_sdp(serialize_sdp(offer)), local_address="10.2.2.2", local_port=40000, session_id=3
    )
    back = accept_answer(offer, parse_sdp(serialize_sdp(sdp)))
    assert (back.codec, back.remote_port, back.event_payload_type) == ("PCMA", 40000, 101)
    assert (plan.codec, plan.remote_port) == ("PCMA", 30004)


def test_mutated_offers_give_an_answer_or_a_clear_rejection() -> None:
    """Seeded random damage to real offers: SdpError or OfferRejected, never another error."""
    rng = random.Random(3264)
    offers = [o.encode() for o in (BARESIP_OFFER, LINPHONE_OFFER, PYVOIP_OFFER)]
    answered = 0
    for _ in range(3000):
        data = bytearray(rng.choice(offers))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            roll = rng.random()
            if roll < 0.4:
                data[pos] = rng.choice(b" :/=0123456789\r\nax\xff-")
            elif roll < 0.7:
                del data[pos : pos + rng.randint(1, 10)]
            else:
                data[pos:pos] = data[rng.randrange(len(data)) :][: rng.randint(1, 20)]
        try:
            session = parse_sdp(bytes(data))
            sdp, _ = answer_offer(session, local_address="10.1.1.1", local_port=1, session_id=1)
            parse_sdp(serialize_sdp(session))
            parse_sdp(serialize_sdp(sdp))
            answered += 1
        except (SdpError, OfferRejected):
            pass
    assert answered > 1000


def test_utf8_session_name_survives() -> None:
    session = parse_sdp(PYVOIP_OFFER.replace("s=pyVoIP 1.6.8", "s=国网95598").encode())
    assert parse_sdp(serialize_sdp(session)).name == "国网95598"


def test_malformed_rtpmap_on_a_declined_video_stream_is_kept_not_fatal() -> None:
    from drivers.sip.sdp import SdpError, answer_offer, parse_sdp

    body = (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n"
    )  # the SDP of RFC 4475 esc01/longreq
    offer = parse_sdp(body)
    assert offer.media[1].attributes == ["rtpmap:31 LPC"]
    answer, plan = answer_offer(offer, local_address="127.0.0.1", local_port=4000, session_id=1)
    assert plan.codec == "PCMU" and answer.media[1].port == 0
    try:
        parse_sdp(body.replace("m=video 3227 RTP/AVP 31", "m=audio 3227 RTP/AVP 31"))
    except SdpError as exc:
        assert "rtpmap" in str(exc)
    else:
        raise AssertionError("a malformed rtpmap on an audio stream must be refused")
