"""Cutting a stream of ``(channels, n)`` audio blocks into whole analysis units.

The vectorized detectors (DTMF, call progress) analyse fixed-size pieces, but the board feeds
them whatever block size its tick has. :class:`Reblocker` keeps the leftover samples of every
channel between calls and counts the samples seen, so a detector can say where an event
happened in a channel's stream.
"""

from __future__ import annotations

import numpy as np


class Reblocker:
    def __init__(self, channels: int, unit: int) -> None:
        self.channels = channels
        self.unit = unit
        self.samples_in = 0  # samples received per channel since construction
        self._pending = np.zeros((channels, 0), dtype=np.float32)  # fewer than `unit` samples

    def take(self, block: np.ndarray) -> np.ndarray:
        """Add ``block`` and return the whole units now available, shape ``(channels, k·unit)``."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected a ({self.channels}, n) block, got {block.shape}")
        self.samples_in += block.shape[1]
        audio = block.astype(np.float32)
        if self._pending.shape[1]:
            audio = np.concatenate([self._pending, audio], axis=1)
        whole = audio.shape[1] // self.unit * self.unit
        self._pending = audio[:, whole:].copy()
        return audio[:, :whole]

    def reset(self, channel: int) -> None:
        """Drop ``channel``'s leftover samples (a new call starts on it)."""
        self._pending[channel] = 0.0
