"""WAV reading and writing: PCM16 and G.711 files in, clear errors for everything else."""

from __future__ import annotations

import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from drivers.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from drivers.media.tones import dtmf_sequence, sine
from drivers.media.wav import WavError, read_wav, write_wav

TONE = sine(1000.0, 100, -10.0)


def riff(fmt_body: bytes, data: bytes, data_size: int | None = None) -> bytes:
    """A RIFF/WAVE file from a fmt chunk body and data bytes."""
    size = len(data) if data_size is None else data_size
    chunks = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    chunks += b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def fmt_chunk(tag: int, channels: int = 1, rate: int = 8000, bits: int = 8) -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)


def test_pcm16_round_trip(tmp_path: Path):
    path = tmp_path / "prompt.wav"
    write_wav(path, TONE)
    samples, rate = read_wav(path, require_rate=8000)
    assert rate == 8000 and samples.dtype == np.int16
    assert np.array_equal(samples, TONE)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)


def test_other_rates_are_read_unless_8000_is_required(tmp_path: Path):
    path = tmp_path / "wideband.wav"
    write_wav(path, TONE, rate=16000)
    assert read_wav(path)[1] == 16000
    with pytest.raises(WavError, match="16000 Hz; 8000 Hz is required"):
        read_wav(path, require_rate=8000)


@pytest.mark.parametrize(
    "tag, encode, decode", [(7, ulaw_encode, ulaw_decode), (6, alaw_encode, alaw_decode)]
)
def test_g711_wav_is_decoded(tmp_path: Path, tag, encode, decode):
    codes = encode(dtmf_sequence("95598", 60, 60))
    path = tmp_path / "g711.wav"
    path.write_bytes(riff(fmt_chunk(tag) + b"\x00\x00", codes.tobytes()))  # cbSize = 0
    samples, rate = read_wav(path, require_rate=8000)
    assert rate == 8000 and np.array_equal(samples, decode(codes))


@pytest.mark.parametrize("encoding", ["u-law", "a-law"])
def test_g711_wav_written_by_sox(tmp_path: Path, encoding):
    source, target = tmp_path / "pcm.wav", tmp_path / f"{encoding}.wav"
    write_wav(source, TONE)
    subprocess.run(["sox", str(source), "-e", encoding, "-b", "8", str(target)], check=True)
    samples, _ = read_wav(target, require_rate=8000)
    assert np.max(np.abs(samples.astype(np.int32) - TONE)) <= np.max(np.abs(TONE)) / 16


def test_extensible_pcm16(tmp_path: Path):
    pcm_guid = struct.pack("<HHI", 1, 0, 0x00100000) + bytes.fromhex("800000aa00389b71")
    body = fmt_chunk(0xFFFE, bits=16) + struct.pack("<HHI", 22, 16, 4) + pcm_guid
    path = tmp_path / "ext.wav"
    path.write_bytes(riff(body, TONE.astype("<i2").tobytes()))
    assert np.array_equal(read_wav(path)[0], TONE)


def test_streamed_header_with_oversized_data_length(tmp_path: Path):
    """espeak-ng --stdout writes 0x7FFFFFFF as the data size; what is there is read."""
    path = tmp_path / "stream.wav"
    path.write_bytes(riff(fmt_chunk(1, bits=16), TONE.astype("<i2").tobytes(), 0x7FFFFFFF))
    assert np.array_equal(read_wav(path)[0], TONE)
    espeak = tmp_path / "espeak.wav"
    with espeak.open("wb") as out:
        subprocess.run(
            ["espeak-ng", "-v", "cmn-latn-pinyin", "--stdout", "您好"], stdout=out, check=True
        )
    samples, rate = read_wav(espeak)
    assert rate == 22050 and len(samples) > rate // 4


def test_unreadable_files(tmp_path: Path):
    with pytest.raises(WavError, match="cannot read"):
        read_wav(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(WavError, match="not a RIFF/WAVE file"):
        read_wav(text)
    truncated = tmp_path / "truncated.wav"
    write_wav(truncated, TONE)
    truncated.write_bytes(truncated.read_bytes()[:30])
    with pytest.raises(WavError):
        read_wav(truncated)
    damaged = tmp_path / "damaged.wav"
    write_wav(damaged, TONE)
    raw = bytearray(damaged.read_bytes())
    raw[16:20] = struct.pack("<I", 0xDB0010)  # fmt chunk size pointing past the end
    damaged.write_bytes(bytes(raw))
    with pytest.raises(WavError, match="no data chunk"):
        read_wav(damaged)
    assert issubclass(WavError, ValueError)


def test_stereo_is_refused(tmp_path: Path):
    path = tmp_path / "stereo.wav"
    write_wav(path, np.stack([TONE, TONE], axis=1), channels=2)
    with pytest.raises(WavError, match="2 channels; mono is required"):
        read_wav(path)


@pytest.mark.parametrize("width, label", [(1, "8-bit PCM"), (3, "24-bit PCM"), (4, "32-bit PCM")])
def test_other_sample_widths_are_refused(tmp_path: Path, width, label):
    path = tmp_path / "wide.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(b"\x00" * width * 100)
    with pytest.raises(WavError, match=label):
        read_wav(path)


def test_float_and_compressed_formats_are_refused(tmp_path: Path):
    path = tmp_path / "float.wav"
    path.write_bytes(riff(fmt_chunk(3, bits=32), b"\x00" * 400))
    with pytest.raises(WavError, match="IEEE float"):
        read_wav(path)
    path.write_bytes(riff(fmt_chunk(0x11, bits=4), b"\x00" * 400))
    with pytest.raises(WavError, match="IMA ADPCM"):
        read_wav(path)


def test_write_wav_checks_its_input(tmp_path: Path):
    with pytest.raises(TypeError):
        write_wav(tmp_path / "x.wav", TONE.astype(np.float32))
    with pytest.raises(ValueError):
        write_wav(tmp_path / "x.wav", TONE, channels=2)
    with pytest.raises(ValueError):
        write_wav(tmp_path / "x.wav", np.stack([TONE, TONE], axis=1))
