"""Call-progress tone detection for analog lines, vectorized across channels.

On an analog line the exchange often signals that the caller hung up by playing busy
(disconnect) tone instead of dropping loop current, so the engine must recognise busy tone to
notice that the caller left; outbound calls also want ring-back and dial tone. China's plan:
450 Hz for all three — busy 350 ms on / 350 ms off, ring-back 1 s on / 4 s off, dial tone
continuous.

Audio is cut into 10 ms frames common to all channels. A frame is *tone* when the plan's
frequencies carry ``TONE_ENERGY_RATIO`` of its energy (single-bin DFTs, one matrix product for
all channels) at or above the plan's minimum level. A per-channel state machine times the
tone/silence segments: a cycle is a tone segment followed by a silence, each within
``tolerance_pct`` of the plan's cadence, and it counts once its silence has lasted the
minimum. "busy" is reported once, when the configured number of consecutive cycles is reached
(so the last silence is known to be at least its minimum, not yet that it ends in time);
"ringback" once after one cycle; "dial" once after ``dial_ms`` of continuous tone. ``reset``
re-arms a channel for a new call.

Timing resolution is one frame (10 ms); a cadence must be off by more than about one frame
beyond the tolerance to be rejected reliably.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from drivers.media.blocks import Reblocker
from drivers.media.tones import dbm0_to_rms

__all__ = ["CHINA", "CallProgressDetector", "ProgressEvent", "TonePlan"]

TONE_ENERGY_RATIO = 0.75  # share of a frame's energy at the plan's frequencies
FRAMES_PER_SECOND = 100  # 10 ms frames


@dataclass(frozen=True, slots=True)
class TonePlan:
    """A country's call-progress tones: frequencies, cadences (ms) and detection limits."""

    name: str
    freqs: tuple[float, ...] = (450.0,)
    busy_on_ms: float = 350.0
    busy_off_ms: float = 350.0
    ringback_on_ms: float = 1000.0
    ringback_off_ms: float = 4000.0
    dial_ms: float = 2000.0  # continuous tone this long is dial tone, not a ring-back burst
    tolerance_pct: float = 20.0  # accepted deviation of each on and off duration
    min_level_dbm0: float = -35.0  # weakest tone accepted (plan frequencies together)


CHINA = TonePlan("china")

ProgressKind = Literal["busy", "ringback", "dial"]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """A call-progress tone recognised on a channel; ``sample`` counts from its (re)start."""

    channel: int
    kind: ProgressKind
    cycles: int
    sample: int


def _frames(ms: float) -> int:
    return round(ms * FRAMES_PER_SECOND / 1000.0)


class _Cadence:
    """Counts consecutive on/off cycles of one cadence, for all channels."""

    def __init__(self, channels: int, on_ms: float, off_ms: float, tolerance_pct: float):
        spread = tolerance_pct / 100.0
        self.on_min, self.on_max = _frames(on_ms * (1 - spread)), _frames(on_ms * (1 + spread))
        self.off_min, self.off_max = _frames(off_ms * (1 - spread)), _frames(off_ms * (1 + spread))
        self.cycles = np.zeros(channels, dtype=np.int32)
        self.on_ok = np.zeros(channels, dtype=bool)  # the current silence follows a good tone
        self.fired = np.zeros(channels, dtype=bool)

    def reset(self, channel: int) -> None:
        self.cycles[channel] = 0
        self.on_ok[channel] = False
        self.fired[channel] = False

    def step(
        self, tone: np.ndarray, run: np.ndarray, ended: np.ndarray, target: np.ndarray | int
    ) -> np.ndarray:
        """Advance one frame. ``tone``: this frame is tone; ``run``: frames in the current
        segment including this one; ``ended``: length of the segment that ended just before
        this frame (0 if none). Returns the channels that reach ``target`` cycles now."""
        tone_ended = (ended > 0) & ~tone
        silence_ended = (ended > 0) & tone
        good_tone = (ended >= self.on_min) & (ended <= self.on_max)
        self.on_ok = np.where(tone_ended, good_tone, self.on_ok & ~silence_ended)
        broken = (tone_ended & ~good_tone) | (silence_ended & (ended < self.off_min))
        broken |= ~tone & (run > self.off_max)
        self.cycles[broken] = 0
        self.on_ok &= ~broken
        completed = ~tone & self.on_ok & (run == self.off_min)
        self.cycles += completed
        report = completed & (self.cycles >= target) & ~self.fired
        self.fired |= report
        return report


class CallProgressDetector:
    """Busy, ring-back and dial tone detection for ``channels`` lines fed in lockstep."""

    def __init__(
        self, channels: int, plan: TonePlan = CHINA, busy_cycles: int = 3, rate: int = 8000
    ) -> None:
        if channels < 1:
            raise ValueError("channels must be >= 1")
        if rate % FRAMES_PER_SECOND:
            raise ValueError(f"rate must be a multiple of {FRAMES_PER_SECOND} Hz, got {rate}")
        if busy_cycles < 1:
            raise ValueError("busy_cycles must be >= 1")
        self.channels = channels
        self.plan = plan
        self.rate = rate
        self._frame = frame = rate // FRAMES_PER_SECOND
        self._blocks = Reblocker(channels, frame)
        omega = 2.0 * np.pi * np.asarray(plan.freqs, dtype=np.float64) / rate
        phase = np.outer(np.arange(frame), omega)
        self._basis = np.concatenate([np.cos(phase), np.sin(phase)], axis=1).astype(np.float32)
        self._min_power = np.float32(dbm0_to_rms(plan.min_level_dbm0) ** 2 * frame)
        self._busy = _Cadence(channels, plan.busy_on_ms, plan.busy_off_ms, plan.tolerance_pct)
        self._ringback = _Cadence(
            channels, plan.ringback_on_ms, plan.ringback_off_ms, plan.tolerance_pct
        )
        self._dial_frames = _frames(plan.dial_ms)
        self._busy_target = np.full(channels, busy_cycles, dtype=np.int32)
        self._tone = np.zeros(channels, dtype=bool)  # current segment is tone
        self._run = np.zeros(channels, dtype=np.int64)  # frames in the current segment
        self._dial_fired = np.zeros(channels, dtype=bool)
        self._frames_done = 0
        self._origin = np.zeros(channels, dtype=np.int64)

    def set_busy_cycles(self, channel: int, cycles: int) -> None:
        """Busy cycles ``channel`` needs before "busy" is reported (exchanges differ)."""
        if cycles < 1:
            raise ValueError("busy cycles must be >= 1")
        self._busy_target[channel] = cycles

    def reset(self, channel: int) -> None:
        """Forget ``channel``'s tone history (a new call); its busy-cycle setting stays."""
        self._busy.reset(channel)
        self._ringback.reset(channel)
        self._tone[channel] = False
        self._run[channel] = 0
        self._dial_fired[channel] = False
        self._blocks.reset(channel)
        self._origin[channel] = self._blocks.samples_in

    def feed(self, block: np.ndarray) -> list[ProgressEvent]:
        """Analyse the next ``(channels, n)`` samples; return the tones recognised."""
        audio = self._blocks.take(block)
        frames = audio.shape[1] // self._frame
        x = audio.reshape(self.channels, frames, self._frame)
        proj = x @ self._basis
        power = np.sum(proj * proj, axis=-1) * np.float32(2.0 / self._frame)
        energy = np.einsum("cfn,cfn->cf", x, x)
        tone = (power >= TONE_ENERGY_RATIO * energy) & (power >= self._min_power)
        events: list[ProgressEvent] = []
        for i in range(frames):
            events += self._step(tone[:, i], self._frames_done + i)
        self._frames_done += frames
        return events

    def _step(self, tone: np.ndarray, frame: int) -> list[ProgressEvent]:
        changed = tone != self._tone
        ended = np.where(changed, self._run, 0)
        self._run = np.where(changed, 1, self._run + 1)
        self._tone = tone
        events = []
        cadences: tuple[tuple[ProgressKind, _Cadence, np.ndarray | int], ...] = (
            ("busy", self._busy, self._busy_target),
            ("ringback", self._ringback, 1),
        )
        for kind, cadence, target in cadences:
            report = cadence.step(tone, self._run, ended, target)
            events += [
                self._event(ch, kind, cadence.cycles[ch], frame) for ch in np.flatnonzero(report)
            ]
        dial = tone & (self._run == self._dial_frames) & ~self._dial_fired
        self._dial_fired |= dial
        events += [self._event(ch, "dial", 0, frame) for ch in np.flatnonzero(dial)]
        return events

    def _event(self, ch: int, kind: ProgressKind, cycles: int, frame: int) -> ProgressEvent:
        end_of_frame = (frame + 1) * self._frame
        return ProgressEvent(int(ch), kind, int(cycles), int(end_of_frame - self._origin[ch]))
