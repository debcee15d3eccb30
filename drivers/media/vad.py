"""Voice activity (silence) detection for ending recordings, vectorized across channels.

Energy-based: a block is *loud* when its RMS level (mean removed) reaches ``threshold_dbm0``;
voice is present in a block when it is loud or starts less than ``hangover_ms`` after the
last loud block, so the short pauses inside speech do not count as silence. A recording
that should end after N seconds of silence ends once ``feed`` has said False for N seconds.

Limits: it measures level, not speech. Steady noise above the threshold (a noisy line, hum,
music on hold) reads as voice; speech quieter than the threshold reads as silence; there is
no adaptive noise floor. Decisions are per block, so their resolution is the block length
(20 ms for the media clock's 160-sample frames). The default −45 dBm0 sits well above idle
G.711 channel noise (about −65 dBm0) and below quiet speech (about −35 dBm0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drivers.media.tones import dbm0_to_rms

__all__ = ["VoiceActivityDetector"]


class VoiceActivityDetector:
    """Per-channel voice/silence decisions for ``channels`` lines fed in lockstep."""

    def __init__(
        self,
        channels: int,
        threshold_dbm0: float = -45.0,
        hangover_ms: float = 200.0,
        rate: int = 8000,
    ) -> None:
        if channels < 1:
            raise ValueError("channels must be >= 1")
        self.channels = channels
        self.threshold_dbm0 = threshold_dbm0
        self._threshold_power = dbm0_to_rms(threshold_dbm0) ** 2
        self._hangover = round(hangover_ms * rate / 1000.0)
        # Samples since the last loud block ended; "long ago" at first, so a line starts silent.
        self._quiet = np.full(channels, self._hangover, dtype=np.int64)

    def reset(self, channel: int) -> None:
        """Forget ``channel``'s recent voice (a new call)."""
        self._quiet[channel] = self._hangover

    def feed(self, block: np.ndarray) -> np.ndarray:
        """Whether each channel has voice in this ``(channels, n)`` block (bool array)."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected a ({self.channels}, n) block, got {block.shape}")
        if block.shape[1] == 0:
            return np.zeros(self.channels, dtype=bool)
        loud = np.var(block, axis=1, dtype=np.float64) >= self._threshold_power
        in_hangover = self._quiet < self._hangover
        self._quiet = np.where(loud, 0, self._quiet + block.shape[1])
        return loud | in_hangover

    def feed_rows(self, block: np.ndarray, channels: Sequence[int]) -> np.ndarray:
        """Like :meth:`feed` for some channels only: row ``i`` of ``block`` is ``channels[i]``.

        The other channels keep their state, as if nothing had been fed to them.
        """
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[0] != len(channels):
            raise ValueError(f"expected a ({len(channels)}, n) block, got {block.shape}")
        index = np.asarray(channels, dtype=np.intp)
        loud = np.var(block, axis=1, dtype=np.float64) >= self._threshold_power
        quiet = self._quiet[index]
        in_hangover = quiet < self._hangover
        self._quiet[index] = np.where(loud, 0, quiet + block.shape[1])
        return loud | in_hangover
