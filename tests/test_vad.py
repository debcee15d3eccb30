"""Voice activity detection: threshold, hangover, per-channel state, real speech then silence."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from drivers.media.tones import mix, silence, sine, white_noise
from drivers.media.vad import VoiceActivityDetector
from ivr.speech.tts import EspeakTts

BLOCK = 160  # 20 ms


def decisions(signal: np.ndarray, **options) -> list[bool]:
    vad = VoiceActivityDetector(1, **options)
    return [bool(vad.feed(signal[None, i : i + BLOCK])[0]) for i in range(0, len(signal), BLOCK)]


def test_silence_and_idle_line_noise_are_not_voice():
    assert not any(decisions(silence(1000)))
    assert not any(decisions(white_noise(1000, -60.0, seed=1)))
    assert not any(decisions(np.full(8000, 1200, dtype=np.int16)))  # DC offset is not voice


def test_threshold():
    assert all(decisions(white_noise(400, -42.0, seed=2)))
    assert not any(decisions(white_noise(400, -48.0, seed=2)))
    assert all(decisions(white_noise(400, -28.0, seed=2), threshold_dbm0=-30.0))


@pytest.mark.parametrize("hangover_ms", [0, 100, 200])
def test_hangover_keeps_voice_for_the_given_time_after_the_last_loud_block(hangover_ms):
    signal = np.concatenate([sine(300, 200, -20.0), silence(600)])
    voiced = decisions(signal, hangover_ms=hangover_ms)
    loud_blocks, hangover_blocks = 10, hangover_ms // 20
    voice_blocks = loud_blocks + hangover_blocks
    assert voiced == [True] * voice_blocks + [False] * (40 - voice_blocks)


def test_short_pauses_inside_speech_stay_voice():
    syllables = np.concatenate([sine(200, 120, -25.0), silence(140)] * 5)
    assert all(decisions(syllables))


def test_channels_are_independent_and_reset():
    vad = VoiceActivityDetector(3)
    block = np.zeros((3, BLOCK), dtype=np.int16)
    block[1] = sine(1000, 20, -20.0)
    assert vad.feed(block).tolist() == [False, True, False]
    quiet = np.zeros((3, BLOCK), dtype=np.int16)
    assert vad.feed(quiet).tolist() == [False, True, False]  # hangover
    vad.reset(1)
    assert vad.feed(quiet).tolist() == [False, False, False]
    assert vad.feed(np.zeros((3, 0), dtype=np.int16)).tolist() == [False, False, False]
    with pytest.raises(ValueError):
        vad.feed(np.zeros((2, BLOCK), dtype=np.int16))


def test_recording_of_real_speech_ends_on_the_trailing_silence():
    speech = asyncio.run(EspeakTts().synthesize("我家停电了，地址是和平路十八号。"))
    speech = speech[: len(speech) // BLOCK * BLOCK]
    noise = white_noise(2000 + len(speech) / 8, -60.0, seed=3)
    recording = mix(np.concatenate([speech, silence(2000)]), noise)
    voiced = decisions(recording)
    spoken = len(speech) // BLOCK
    assert np.mean(voiced[:spoken]) > 0.8
    assert not any(voiced[spoken + 10 :])  # silent after the 200 ms hangover


def test_feeding_some_channels_matches_feeding_all_and_leaves_the_others_alone():
    loud_block = sine(1000, 20, -20.0)
    quiet = np.zeros(BLOCK, dtype=np.int16)
    full, part = VoiceActivityDetector(4), VoiceActivityDetector(4)
    for frame in ([loud_block, quiet, quiet, loud_block], [quiet] * 4, [quiet] * 4):
        block = np.stack(frame)
        expected = full.feed(block)
        assert part.feed_rows(block[[0, 3]], [0, 3]).tolist() == expected[[0, 3]].tolist()
    # channel 3 was loud 40 ms ago (hangover); channel 1 was never fed and is still silent
    assert part.feed_rows(np.stack([quiet, quiet]), [3, 1]).tolist() == [True, False]
    with pytest.raises(ValueError):
        part.feed_rows(np.stack([quiet]), [0, 1])
