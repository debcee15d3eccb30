"""Call-progress tones (China's plan): busy after exactly N cycles, ring-back, dial tone, and
nothing on speech, DTMF or cadences outside the tolerance."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from drivers.media.progress import CHINA, CallProgressDetector, ProgressEvent, TonePlan
from drivers.media.tones import (
    cadence_tone,
    dtmf_sequence,
    mix,
    silence,
    sine,
    white_noise,
)
from ivr.speech.audio import to_8k
from ivr.speech.tts import parse_wav


def run(signals: list[np.ndarray], block: int = 160, **options) -> list[ProgressEvent]:
    """Feed signals as the channels of one detector, 20 ms at a time."""
    length = max(len(s) for s in signals)
    audio = np.zeros((len(signals), length), dtype=np.int16)
    for ch, signal in enumerate(signals):
        audio[ch, : len(signal)] = signal
    detector = CallProgressDetector(len(signals), **options)
    events = []
    for i in range(0, length, block):
        events += detector.feed(audio[:, i : i + block])
    return events


def busy(cycles: int, on_ms: float = 350, off_ms: float = 350, dbm0: float = -10.0):
    return np.concatenate(
        [silence(500), cadence_tone(450, on_ms, off_ms, cycles, dbm0), silence(2000)]
    )


def jittered_busy(cycles: int, jitter: float, seed: int) -> np.ndarray:
    """Busy tone whose every on and off duration is off by up to ±``jitter``."""
    rng = np.random.default_rng(seed)
    parts = [silence(300)]
    for _ in range(cycles):
        on, off = 350 * (1 + rng.uniform(-jitter, jitter, size=2))
        parts += [sine(450, on, -12.0), silence(off)]
    return np.concatenate(parts + [silence(1500)])


@pytest.mark.parametrize("cycles", [2, 3, 5])
def test_busy_after_exactly_the_configured_cycles(cycles):
    events = run([busy(cycles - 1), busy(cycles), busy(cycles + 3)], busy_cycles=cycles)
    assert [(e.channel, e.kind, e.cycles) for e in events] == [
        (1, "busy", cycles),
        (2, "busy", cycles),
    ]
    # Reported when the last cycle's silence reaches its minimum (280 ms): 500 ms of lead-in,
    # (cycles - 1) whole cycles, one tone and 280 ms of silence.
    expected = (500 + (cycles - 1) * 700 + 350 + 280) * 8
    assert all(abs(e.sample - expected) <= 80 for e in events)


def test_busy_cycles_per_channel():
    detector_input = [busy(4)] * 3
    length = len(detector_input[0])
    detector = CallProgressDetector(3, busy_cycles=3)
    detector.set_busy_cycles(1, 5)
    detector.set_busy_cycles(2, 2)
    audio = np.stack(detector_input)
    events = []
    for i in range(0, length, 160):
        events += detector.feed(audio[:, i : i + 160])
    assert sorted((e.channel, e.cycles) for e in events) == [(0, 3), (2, 2)]
    with pytest.raises(ValueError):
        detector.set_busy_cycles(0, 0)


@pytest.mark.parametrize("seed", range(6))
def test_busy_with_10_percent_jitter_is_detected(seed):
    events = run([jittered_busy(4, 0.10, seed)], busy_cycles=3)
    assert [(e.kind, e.cycles) for e in events] == [("busy", 3)]


@pytest.mark.parametrize(
    "on_ms, off_ms",
    [(455, 455), (245, 245), (350, 455), (350, 245), (455, 350), (245, 350), (700, 700)],
)
def test_cadences_30_percent_off_or_more_are_not_busy(on_ms, off_ms):
    assert run([busy(6, on_ms, off_ms)], busy_cycles=3) == []


def test_ringback_and_dial_tone():
    ringback = np.concatenate([silence(300), cadence_tone(450, 1000, 4000, 2, -12.0)])
    dial = sine(450, 3000, -10.0)
    events = run([ringback, dial])
    assert [(e.channel, e.kind, e.cycles) for e in events] == [(1, "dial", 0), (0, "ringback", 1)]
    dial_event, ringback_event = events
    assert dial_event.sample == pytest.approx(CHINA.dial_ms * 8, abs=80)
    assert ringback_event.sample == pytest.approx((300 + 1000 + 3200) * 8, abs=80)


def test_ringback_is_not_busy_and_busy_is_not_ringback_or_dial():
    ringback = np.concatenate([silence(300), cadence_tone(450, 1000, 4000, 3, -12.0)])
    events = run([ringback, busy(8)], busy_cycles=2)
    assert sorted((e.channel, e.kind) for e in events) == [(0, "ringback"), (1, "busy")]


def test_minimum_level():
    weak, faint = busy(4, dbm0=CHINA.min_level_dbm0 + 3), busy(4, dbm0=-45.0)
    assert [(e.channel, e.kind) for e in run([weak, faint])] == [(0, "busy")]


def test_busy_in_line_noise():
    tone = busy(4, dbm0=-20.0)
    noisy = mix(tone, white_noise(len(tone) / 8, -40.0, seed=1))
    assert [e.kind for e in run([noisy])] == ["busy"]


def test_reset_rearms_a_line_and_counts_from_the_new_call():
    audio = np.stack([busy(3), busy(3)])
    detector = CallProgressDetector(2, busy_cycles=3)
    first = detector.feed(audio)
    assert sorted(e.channel for e in first) == [0, 1]
    assert detector.feed(audio) == []  # reported once per call
    detector.reset(1)
    second = detector.feed(audio)
    assert [(e.channel, e.kind) for e in second] == [(1, "busy")]
    assert second[0].sample == first[1].sample  # sample counted from the reset


def test_other_plans():
    us_busy = TonePlan("us", freqs=(480.0, 620.0), busy_on_ms=500, busy_off_ms=500)
    tone = (sine(480, 500, -16.0).astype(np.int32) + sine(620, 500, -16.0)).astype(np.int16)
    signal = np.concatenate([np.concatenate([tone, silence(500)])] * 4 + [silence(1000)])
    assert [e.kind for e in run([signal], plan=us_busy, busy_cycles=3)] == ["busy"]
    assert run([signal]) == []  # not China's busy tone


def mandarin_speech(text: str, voice: str, pitch: int) -> np.ndarray:
    """espeak-ng Mandarin, resampled and levelled (−6 dBFS peak) as prompts are."""
    command = ["espeak-ng", "-v", voice, "-p", str(pitch), "--stdout", text]
    return to_8k(*parse_wav(subprocess.run(command, capture_output=True, check=True).stdout))


def test_no_tone_on_speech_or_dtmf():
    text = (
        "您好，这里是九五五九八供电服务热线，请问有什么可以帮您？"
        "停电了，我家里没有电。好的，请稍等。"
    )
    speech = [
        mandarin_speech(text, voice, pitch)
        for voice, pitch in [
            ("cmn-latn-pinyin", 50),
            ("cmn-latn-pinyin+f2", 99),
            ("cmn-latn-pinyin+m3", 20),
        ]
    ]
    speech.append(np.concatenate([speech[0], silence(300), speech[1], silence(400), speech[2]]))
    digits = np.tile(dtmf_sequence("0123456789*#", 350, 350, -10.0), 2)
    assert run(speech + [digits], busy_cycles=2) == []


def test_bad_arguments():
    with pytest.raises(ValueError):
        CallProgressDetector(0)
    with pytest.raises(ValueError):
        CallProgressDetector(1, busy_cycles=0)
    with pytest.raises(ValueError):
        CallProgressDetector(2).feed(np.zeros((1, 160), dtype=np.int16))
