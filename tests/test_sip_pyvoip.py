"""Interop with a second, independent SIP phone: pyVoIP 1.6.8 (pure Python, its own threads).

The phone registers as agent seat 1001 with digest authentication (the demo password of
docs/sip.md), calls 95598, hears the welcome prompt (the audio it decoded correlates with the
prompt's own samples), keys in the bill lookup and hangs up; the engine's call record and
outcome show the path. pyVoIP 1.6 cannot send RFC 4733 events, so the call offers PCMU only
and the keys are DTMF tones written into its audio (the engine's in-band detector hears them).
pyVoIP keeps real time with its own threads, so the engine runs on its production loop.
"""

from __future__ import annotations

import asyncio
import select as select_module
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from test_sip_calls import listen, said

from drivers.clock import new_loop
from drivers.media.tones import dtmf_sequence
from hotline.services.sip_seats import DEMO_PASSWORD
from hotline.store.models import CallRecord

VoIP = pytest.importorskip("pyVoIP.VoIP", reason="pyVoIP is in the test extras")
RTP = pytest.importorskip("pyVoIP.RTP")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PatientSocket:
    """pyVoIP's SIP socket, made to wait (≤ 5 s) for the INVITE's first answer.

    ``SIPClient.invite`` reads its socket right after sending, while the socket is still in the
    non-blocking mode registration left it in, and fails with BlockingIOError unless the answer
    is already there. Only the thread placing the call waits; pyVoIP's receiver is unchanged.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.waiting_thread: int | None = None

    def recv(self, size: int) -> bytes:
        if threading.get_ident() == self.waiting_thread:
            select_module.select([self._sock], [], [], 5.0)
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def call_pcmu_only(phone: Any, number: str) -> Any:
    """``VoIPPhone.call`` offering PCMU without telephone-event (pyVoIP cannot send events)."""
    port = phone.request_port()
    medias = {port: {0: RTP.PayloadType.PCMU}}
    patient = PatientSocket(phone.sip.s)
    phone.sip.s = phone.sip.out = patient
    patient.waiting_thread = threading.get_ident()
    try:
        request, call_id, session_id = phone.sip.invite(number, medias, RTP.TransmitType.SENDRECV)
    finally:
        patient.waiting_thread = None
    phone.calls[call_id] = VoIP.VoIPCall(
        phone,
        VoIP.CallState.DIALING,
        request,
        session_id,
        phone.myIP,
        ms=medias,
        sendmode=phone.sendmode,
    )
    return phone.calls[call_id]


def keys_as_audio(keys: str) -> bytes:
    """DTMF tones in pyVoIP's audio format: 8 kHz unsigned 8-bit linear."""
    samples = dtmf_sequence(keys, on_ms=120, off_ms=120, dbm0=-6.0)
    return ((samples.astype(np.int32) >> 8) + 128).clip(0, 255).astype(np.uint8).tobytes()


class Listener:
    """Reads what the phone decoded, 160 bytes (20 ms) every 30 ms, in its own thread.

    Reading slower than real time never reaches the end of pyVoIP's receive buffer, where a
    read would be padded with silence and holes would be cut into the audio.
    """

    def __init__(self, call: Any) -> None:
        self.call = call
        self.heard = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pyvoip-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # bounded whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.heard += self.call.read_audio(160, blocking=False)
            except Exception:  # the call ended under us
                return
            time.sleep(0.03)

    def stop(self) -> np.ndarray:
        self._stop.set()
        self._thread.join(5)
        return (np.frombuffer(bytes(self.heard), np.uint8).astype(np.int32) - 128) * 256


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout} s")
        await asyncio.sleep(0.05)


def best_correlation(heard: np.ndarray, reference: np.ndarray) -> float:
    """Peak normalized correlation of a 0.5 s piece of ``reference`` anywhere in ``heard``."""
    piece = reference[16000:20000].astype(np.float64)  # 2 s in: speech, not a leading pause
    piece -= piece.mean()
    signal = heard.astype(np.float64)
    if len(signal) < len(piece) or not piece.any():
        return 0.0
    n = 1 << int(np.ceil(np.log2(len(signal) + len(piece))))
    corr = np.fft.irfft(np.fft.rfft(signal, n) * np.conj(np.fft.rfft(piece, n)), n)
    corr = corr[: len(signal) - len(piece) + 1]
    energy = np.convolve(signal**2, np.ones(len(piece)), "valid")
    scores = corr / (np.sqrt(np.maximum(energy, 1.0)) * np.linalg.norm(piece))
    return float(scores.max())


def test_pyvoip_registers_with_digest_calls_95598_and_looks_up_a_bill(
    engine_config: Any,
) -> None:
    from hotline.engine import Engine

    engine_config.sip.answer_after = 0.2
    if getattr(engine_config, "api", None) is not None:
        engine_config.api.enabled = False  # not under test; its fixed port may be taken
    rtp_low = free_port()

    async def go() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        engine = Engine(engine_config, watch_flows=False)
        await engine.start()
        plays = listen(engine)
        phone = VoIP.VoIPPhone(
            "127.0.0.1",
            engine.sip.port,
            "1001",
            DEMO_PASSWORD,
            myIP="127.0.0.1",
            sipPort=free_port(),
            rtpPortLow=rtp_low,
            rtpPortHigh=rtp_low,
        )
        seen: dict[str, Any] = {}
        listener: Listener | None = None
        try:
            await asyncio.wait_for(loop.run_in_executor(None, phone.start), 15)
            binding = engine.sip.registrar.contact_for("1001", loop.time())
            seen["binding"] = binding.contact if binding else None
            call = await asyncio.wait_for(
                loop.run_in_executor(None, call_pcmu_only, phone, "95598"), 15
            )
            await wait_until(lambda: call.state == VoIP.CallState.ANSWERED, 15, "the answer")
            listener = Listener(call)
            await wait_until(lambda: said(plays, "电费查询请按一"), 30, "the main menu")
            call.write_audio(keys_as_audio("1"))
            await wait_until(lambda: said(plays, "请输入您的十位户号"), 30, "the account prompt")
            call.write_audio(keys_as_audio("1234567890#"))
            await wait_until(lambda: said(plays, "确认请按一"), 30, "the confirmation")
            call.write_audio(keys_as_audio("1"))
            await wait_until(lambda: said(plays, "本月电费为一百二十三元四角五分"), 30, "the bill")
            await loop.run_in_executor(None, call.hangup)
            await asyncio.wait_for(engine.idle(), 15)
            seen["heard"] = listener.stop()
            listener = None
            welcome = next(p for p in plays if p.get("kind") == "prompt")
            seen["welcome"] = await engine.speech.prompt(welcome["prompt_id"], welcome["text"])
            seen["outcome"] = next(iter(engine.outcomes.values()))
            async with engine.db.session() as session:
                seen["records"] = list((await session.execute(select(CallRecord))).scalars())
            await asyncio.wait_for(loop.run_in_executor(None, phone.stop), 15)
            await asyncio.sleep(0.2)
            seen["after_stop"] = engine.sip.registrar.contact_for("1001", loop.time())
        finally:
            if listener is not None:
                listener.stop()
            if phone.get_status() != VoIP.PhoneStatus.INACTIVE:
                await loop.run_in_executor(None, phone.stop)
            await engine.stop()
        return seen

    loop = new_loop()  # the engine's production loop: uvloop where available
    try:
        seen = loop.run_until_complete(go())
    finally:
        loop.close()

    assert seen["binding"] is not None and "1001@127.0.0.1" in seen["binding"]
    outcome = seen["outcome"]
    assert outcome.keys.startswith("1" + "1234567890" + "1"), outcome.keys
    assert any("bill" in step for step in outcome.path)
    (record,) = seen["records"]
    assert record.called == "95598" and record.caller == "1001" and record.line == "sip"
    assert record.answered_at is not None and record.hangup_cause == "remote_bye"
    heard = seen["heard"]
    welcome = seen["welcome"].samples
    assert (np.abs(heard) > 1000).sum() > (np.abs(welcome) > 1000).sum()  # speech, not silence
    assert best_correlation(heard, welcome) > 0.9  # it is the welcome prompt, sample for sample
    assert seen["after_stop"] is None  # pyVoIP unregistered on stop


@pytest.mark.parametrize(
    ("digest_uri", "accepted"),
    [
        ("sip:127.0.0.1;transport=UDP", True),  # what pyVoIP 1.6 sends for "REGISTER sip:127.0.0.1"
        ("sip:127.0.0.1", True),
        ("sip:127.0.0.2;transport=UDP", False),
        ("sip:1001@127.0.0.1", False),
    ],
)
def test_digest_uri_may_differ_from_the_request_uri_in_parameters_only(
    digest_uri: str, accepted: bool
) -> None:
    from drivers.sip.digest import Credential, DigestAuthenticator, NonceIssuer
    from drivers.sip.trunk import DigestClient, parse_challenge

    realm = "hotline-95598"
    seats = {"1001": Credential.from_password("1001", realm, DEMO_PASSWORD)}
    server = DigestAuthenticator(realm, seats.get, NonceIssuer(b"k"), algorithms=("MD5",))
    (challenge,) = server.challenges(0.0)
    answer = DigestClient("1001", DEMO_PASSWORD).authorization(
        parse_challenge(challenge), method="REGISTER", uri=digest_uri
    )
    decision = server.verify(
        method="REGISTER",
        request_uri="sip:127.0.0.1",
        authorization=answer,
        source="127.0.0.1",
        now=1.0,
    )
    assert decision.accepted is accepted, decision.reason
