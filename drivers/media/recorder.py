"""Whole-call recording: caller on the left channel, engine/agent on the right.

A recording is written while the call runs as ``<name>.wav.part``: a WAV header with
placeholder sizes followed by interleaved 16-bit stereo frames appended through a buffered
file (about 33 µs of CPU per call-second). :meth:`CallRecorder.finish` patches the header sizes
and renames the file to ``<name>.wav``. A ``.part`` file left behind by a crash is a valid
recording missing only its sizes: :func:`recover_partial` truncates it to whole frames,
patches the header and renames it, so no audio written before the crash is lost.

Size: 2 channels × 8 kHz × 16 bit = 32 kB/s, 115 MB per call-hour.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 8000
CHANNELS = 2
SAMPLE_BYTES = 2
FRAME_BYTES = CHANNELS * SAMPLE_BYTES
HEADER_BYTES = 44
PART_SUFFIX = ".part"


def _header(data_bytes: int, *, channels: int = CHANNELS, rate: int = RATE) -> bytes:
    block = channels * SAMPLE_BYTES
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


@dataclass(slots=True, frozen=True)
class FinishedRecording:
    path: str
    seconds: float
    channels: int
    bytes: int
    recovered: bool = False

    def event_data(self) -> dict[str, object]:
        """The fields of the ``recording.finished`` event the drivers publish."""
        return {
            "path": self.path,
            "seconds": self.seconds,
            "channels": self.channels,
            "bytes": self.bytes,
            "recovered": self.recovered,
        }


class CallRecorder:
    """Appends 20 ms stereo frames for one call and finalizes the WAV."""

    def __init__(self, path: str | os.PathLike[str], *, buffer_bytes: int = 64 * 1024) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.part_path = self.path.with_name(self.path.name + PART_SUFFIX)
        self._file = open(self.part_path, "wb", buffering=buffer_bytes)  # noqa: SIM115
        self._file.write(_header(0))
        self._frames = 0
        self.finished: FinishedRecording | None = None

    @property
    def seconds(self) -> float:
        return self._frames / RATE

    def write(self, caller: np.ndarray, engine: np.ndarray) -> None:
        """Append one block: ``caller`` (left) and ``engine`` (right), int16, equal length."""
        stereo = np.empty(2 * len(caller), dtype="<i2")
        stereo[0::2] = caller
        stereo[1::2] = engine
        self._file.write(stereo.tobytes())
        self._frames += len(caller)

    def write_interleaved(self, frames: bytes) -> None:
        """Append already interleaved little-endian stereo int16 frames."""
        self._file.write(frames)
        self._frames += len(frames) // FRAME_BYTES

    def finish(self) -> FinishedRecording:
        """Patch the header, rename to the final path. Idempotent."""
        if self.finished is not None:
            return self.finished
        data_bytes = self._frames * FRAME_BYTES
        self._file.seek(0)
        self._file.write(_header(data_bytes))
        self._file.close()
        os.replace(self.part_path, self.path)
        self.finished = FinishedRecording(
            str(self.path), self._frames / RATE, CHANNELS, HEADER_BYTES + data_bytes
        )
        return self.finished


def recover_partial(part_path: str | os.PathLike[str]) -> FinishedRecording:
    """Finalize a ``.wav.part`` left by a crash (see the module docstring)."""
    part = Path(part_path)
    final = part.with_name(part.name.removesuffix(PART_SUFFIX))
    size = part.stat().st_size
    data_bytes = max(0, size - HEADER_BYTES) // FRAME_BYTES * FRAME_BYTES
    with open(part, "r+b") as f:
        f.truncate(HEADER_BYTES + data_bytes)
        f.seek(0)
        f.write(_header(data_bytes))
    os.replace(part, final)
    return FinishedRecording(
        str(final), data_bytes / FRAME_BYTES / RATE, CHANNELS, HEADER_BYTES + data_bytes, True
    )


def find_partials(directory: str | os.PathLike[str]) -> list[Path]:
    """Every unfinished recording under ``directory``."""
    root = Path(directory)
    if not root.exists():
        return []
    return sorted(root.rglob("*.wav" + PART_SUFFIX))
