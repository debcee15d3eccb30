"""Streaming in-band DTMF detection, vectorized across many channels.

How it works (ideas from spandsp and Asterisk, own code):

* **Frames.** Every 2.5 ms (a *chunk*: 20 samples at 8 kHz) each channel gets a new analysis
  frame: the last 20 ms (160 samples) under a Hann window, analysed at the 8 DTMF frequencies.
  20 ms with Hann separates adjacent rows (73 Hz apart: −14 dB) and keeps a strong tone's
  leakage into the other group below −50 dB, so twist and noise do not disturb the phase test
  below. The fine 2.5 ms hop is what tells a 40 ms tone from a 23 ms one: with spandsp's
  12.75 ms blocks both can give the same two hits.
* **Cheap overlap.** Frames overlap 8-fold, so no frame is computed from scratch: each chunk
  is multiplied once (one matrix product for all channels) by the 8 windowed DFT kernels of the
  8 positions it takes in successive frames, and frames are sums of those partial products.
* **Frame test.** The strongest row and column each reach −40 dBm0, stand 6 dB above the other
  rows/columns, the twist is within +6/−10 dB, and the pair carries 80 % of the frame's
  windowed energy (the relative-energy talk-off guard: voiced speech and music spread their
  energy over harmonics).
* **Frequency test.** DFT phases are referenced to the absolute sample clock, so a tone Δf off
  its nominal frequency turns by 2π·Δf·5 ms between frames two chunks apart. The turn measures
  each tone's offset in one step, independent of level: the accept/reject boundary sits at
  2.5 %, between the 1.5 % that must pass and the 3.5 % that must not — which a magnitude test
  on a short window cannot do at 697 Hz. The measured offset also corrects the tone's power for
  the window's roll-off, so the energy test does not penalise an accepted deviation.
* **Timing.** A frame is a *hit* when it and the frame two chunks earlier pass with the same
  digit. ``CONFIRM_HITS`` consecutive hits confirm a digit — the "start" event, reported at
  once so an IVR can barge in (35–37 ms after the tone began); ``RELEASE_MISSES`` consecutive
  non-hits end it, which bridges drop-outs ≤ 10 ms and splits digits at pauses ≥ 40 ms.

Arrays are time-major, (frames, channels, …): the analysis is array arithmetic over all
frames and channels of a ``feed``; the state machine steps through the few frames of a feed
(8 for a 20 ms block) with channel-wide operations, and Python touches only channels that
start or end a digit. Input may be int16 or float on the int16 scale (32767 = full scale).

Requirements met (Bellcore/AT&T columns of Q.24; see docs/dsp.md for how each is tested):
frequency ±1.5 % accepted, ±3.5 % rejected; 0 to −25 dBm0 per tone accepted, −55 dBm0
rejected; twist +4 dB (high louder) to −8 dB accepted; ≥ 40 ms tones accepted, ≤ 23 ms
rejected; 40 ms pauses split digits; ≤ 10 ms interruptions bridged; 15 dB SNR; no talk-off
on the speech and music of the tests. DC offset is not removed (G.711 audio has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import soxr

from drivers.media.blocks import Reblocker
from drivers.media.tones import DTMF_COLUMNS, DTMF_KEYS, DTMF_ROWS, dbm0_to_rms

__all__ = ["DtmfDetector", "DtmfEvent", "detect_digits"]

FRAME_CHUNKS = 8  # frame = 8 chunks = 20 ms
PHASE_LAG = 2  # the frequency test compares frames 2 chunks (5 ms) apart
MIN_TONE_DBM0 = -40.0  # each tone of the pair (must accept −25 − 8 dB twist, reject −55)
MAX_REVERSE_TWIST_DB = 6.0  # high tone louder than low (must accept 4, reject 8)
MAX_NORMAL_TWIST_DB = 10.0  # low tone louder than high (must accept 8, reject 12)
RELATIVE_PEAK_DB = 6.0  # winning row/column over the other rows/columns
PAIR_ENERGY_RATIO = 0.8  # share of the frame's energy carried by the tone pair
FREQ_TOLERANCE = 0.025  # relative offset, measured from the phase turn
CONFIRM_HITS = 7  # a 23 ms tone gives ≤ 4 consecutive hits, a 40 ms one ≥ 9
RELEASE_MISSES = 16  # a 10 ms drop-out costs ≤ 11 hits, a 40 ms pause ≥ 21

_FREQS = np.array(DTMF_ROWS + DTMF_COLUMNS)
_DIGITS = [key for row in DTMF_KEYS for key in row]  # index = row * 4 + column


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """A digit started or ended on a channel; ``sample`` counts from the channel's (re)start."""

    channel: int
    digit: str
    kind: Literal["start", "end"]
    sample: int


class DtmfDetector:
    """In-band DTMF receiver for ``channels`` lines fed in lockstep."""

    def __init__(self, channels: int, rate: int = 8000) -> None:
        if channels < 1:
            raise ValueError("channels must be >= 1")
        if rate % 400 or rate < 8000:
            raise ValueError(f"rate must be a multiple of 400 Hz and >= 8000, got {rate}")
        self.channels = channels
        self.rate = rate
        self._chunk = chunk = rate // 400
        self._blocks = Reblocker(channels, chunk)
        frame = chunk * FRAME_CHUNKS
        n = np.arange(frame)
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / frame)  # periodic Hann
        omega = 2.0 * np.pi * _FREQS / rate
        kernel = window[:, None] * np.exp(-1j * np.outer(n, omega))  # (frame, 8)
        kernel = np.concatenate([kernel.real, kernel.imag], axis=1)  # (frame, 16): re | im
        # Row block c: the kernel rows that the chunk in position c of a frame multiplies.
        self._dft_basis = _by_position(kernel, chunk)  # (FRAME_CHUNKS * 16, chunk)
        self._energy_basis = _by_position((window**2)[:, None], chunk)  # (FRAME_CHUNKS, chunk)
        # Scale |X|² so that a tone filling the frame reads as its windowed energy.
        self._power_scale = np.float32(2.0 * np.sum(window**2) / np.sum(window) ** 2)
        self._min_power = np.float32(dbm0_to_rms(MIN_TONE_DBM0) ** 2 * np.sum(window**2))
        # A tone on its nominal frequency turns by omega·lag between frames PHASE_LAG chunks
        # apart; one off by FREQ_TOLERANCE turns max_turn further. One radian of extra turn
        # means a frequency offset of bins_per_radian DFT bins.
        lag = PHASE_LAG * chunk
        self._nominal_turn_back = np.exp(-1j * omega * lag).astype(np.complex64)
        self._max_turn = (2.0 * np.pi * FREQ_TOLERANCE * _FREQS * lag / rate).astype(np.float32)
        self._bins_per_radian = np.float32(frame / (2.0 * np.pi * lag))

        self._chunks_done = 0  # chunks analysed per channel since construction
        # Partial sums of the FRAME_CHUNKS - 1 frames that have started but not ended.
        self._open_dft = np.zeros((16, FRAME_CHUNKS - 1, channels), dtype=np.float32)
        self._open_energy = np.zeros((FRAME_CHUNKS - 1, channels), dtype=np.float32)
        self._prev_dft = np.zeros((16, PHASE_LAG, channels), dtype=np.float32)
        self._prev_digits = np.full((PHASE_LAG, channels), -1, dtype=np.int8)
        # Per-channel state machine.
        self._cand = np.full(channels, -1, dtype=np.int8)  # digit of the current hit run
        self._run = np.zeros(channels, dtype=np.int32)  # length of that run
        self._run_frame = np.zeros(channels, dtype=np.int64)  # its first frame
        self._active = np.full(channels, -1, dtype=np.int8)  # confirmed digit, -1 none
        self._miss = np.zeros(channels, dtype=np.int32)  # frames since it last hit
        self._last_frame = np.zeros(channels, dtype=np.int64)  # its last hit frame
        self._origin = np.zeros(channels, dtype=np.int64)  # sample where the channel restarted

    # -- public -------------------------------------------------------------------------

    def reset(self, channel: int) -> None:
        """Forget everything about ``channel`` (a new call on that line); no event is sent."""
        self._blocks.reset(channel)
        self._open_dft[..., channel] = 0.0
        self._open_energy[:, channel] = 0.0
        self._prev_dft[..., channel] = 0.0
        self._prev_digits[:, channel] = -1
        self._cand[channel] = -1
        self._run[channel] = 0
        self._active[channel] = -1
        self._miss[channel] = 0
        self._origin[channel] = self._blocks.samples_in

    def feed(self, block: np.ndarray) -> list[DtmfEvent]:
        """Analyse the next ``(channels, n)`` samples; return the digit starts and ends seen,
        in time order."""
        audio = self._blocks.take(block)
        chunks = audio.shape[1] // self._chunk
        if chunks == 0:
            return []
        first_frame = self._chunks_done - (FRAME_CHUNKS - 1)  # chunk where the 1st frame starts
        dft, energy = self._frames(audio, chunks)
        return self._step(self._hits(dft, energy), first_frame)

    # -- analysis -----------------------------------------------------------------------

    def _frames(self, audio: np.ndarray, chunks: int) -> tuple[np.ndarray, np.ndarray]:
        """Windowed DFT (re | im: (16, chunks, channels)) and windowed energy (chunks,
        channels) of the frames ending with each new chunk."""
        x = audio.reshape(self.channels, chunks, self._chunk).transpose(2, 1, 0)
        x = np.ascontiguousarray(x).reshape(self._chunk, chunks * self.channels)
        shape = (FRAME_CHUNKS, chunks, self.channels)
        part_dft = (self._dft_basis @ x).reshape(FRAME_CHUNKS, 16, *shape[1:])
        part_energy = (self._energy_basis @ (x * x)).reshape(shape)
        opened = FRAME_CHUNKS - 1
        dft = np.zeros((16, opened + chunks, self.channels), dtype=np.float32)
        energy = np.zeros((opened + chunks, self.channels), dtype=np.float32)
        dft[:, :opened] = self._open_dft
        energy[:opened] = self._open_energy
        for c in range(FRAME_CHUNKS):  # frame j takes chunk j + c in position c
            dft[:, opened - c : opened - c + chunks] += part_dft[c]
            energy[opened - c : opened - c + chunks] += part_energy[c]
        self._open_dft = dft[:, chunks:].copy()
        self._open_energy = energy[chunks:].copy()
        self._chunks_done += chunks
        return dft[:, :chunks], energy[:chunks]

    def _hits(self, dft: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """Per frame and channel: the digit whose tone pair passes every test, or -1."""
        frames = dft.shape[1]
        re, im = dft[:8], dft[8:]
        power = (re * re + im * im) * self._power_scale  # (8, frames, channels)
        every_dft = np.concatenate([self._prev_dft, dft], axis=1)
        self._prev_dft = every_dft[:, frames:]
        then_re, then_im = every_dft[:8, :frames], every_dft[8:, :frames]
        # now · conj(then): its angle is how far each tone turned since the earlier frame.
        turn_re = re * then_re + im * then_im
        turn_im = im * then_re - re * then_im

        row, row_top, row_second = _best_of_four(power[:4])
        col, col_top, col_second = _best_of_four(power[4:])
        col += 4
        p_row, row_in_tolerance = self._tone(row, row_top, turn_re, turn_im)
        p_col, col_in_tolerance = self._tone(col, col_top, turn_re, turn_im)
        peak = np.float32(10.0 ** (RELATIVE_PEAK_DB / 10.0))
        ok = row_in_tolerance & col_in_tolerance
        ok &= (p_row >= self._min_power) & (p_col >= self._min_power)
        ok &= p_col <= p_row * np.float32(10.0 ** (MAX_REVERSE_TWIST_DB / 10.0))
        ok &= p_row <= p_col * np.float32(10.0 ** (MAX_NORMAL_TWIST_DB / 10.0))
        ok &= (row_second * peak <= row_top) & (col_second * peak <= col_top)
        ok &= p_row + p_col >= np.float32(PAIR_ENERGY_RATIO) * energy
        digits = np.where(ok, row * 4 + col - 4, -1).astype(np.int8)

        # A hit also needs the frame PHASE_LAG chunks earlier to show the same digit.
        every_digit = np.concatenate([self._prev_digits, digits])
        self._prev_digits = every_digit[-PHASE_LAG:]
        return np.where(every_digit[:-PHASE_LAG] == digits, digits, -1).astype(np.int8)

    def _tone(
        self, index: np.ndarray, power: np.ndarray, turn_re: np.ndarray, turn_im: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """For tone ``index`` of each frame, of measured ``power`` and phase turn: the power
        corrected for the window's loss at the frequency offset, and whether the offset is
        within tolerance."""
        flat = index * index.size + np.arange(index.size).reshape(index.shape)
        turn = np.take(turn_re, flat) + 1j * np.take(turn_im, flat)
        extra_turn = np.abs(np.angle(turn * self._nominal_turn_back[index]))
        max_turn = self._max_turn[index]
        offset_bins = np.minimum(extra_turn, max_turn) * self._bins_per_radian
        return power / _hann_response(offset_bins) ** 2, extra_turn <= max_turn

    # -- timing -------------------------------------------------------------------------

    def _step(self, hits: np.ndarray, first_frame: int) -> list[DtmfEvent]:
        """Run the per-channel start/end state machine over the frames of this feed."""
        events: list[DtmfEvent] = []
        for i, hit in enumerate(hits):
            frame = first_frame + i
            found = hit >= 0
            same = found & (hit == self._cand)
            self._run = np.where(same, self._run + 1, found.astype(np.int32))
            self._run_frame = np.where(same, self._run_frame, frame)
            self._cand = hit
            active = self._active >= 0
            held = active & (hit == self._active)
            self._miss = np.where(held, 0, self._miss + 1)
            self._last_frame = np.where(held, frame, self._last_frame)
            ending = active & (self._miss >= RELEASE_MISSES)
            starting = (self._run >= CONFIRM_HITS) & (~active | ending)
            if ending.any():
                for ch in np.flatnonzero(ending):
                    events.append(self._event(ch, self._active[ch], "end", self._last_frame[ch]))
                self._active = np.where(ending, -1, self._active)
            if starting.any():
                for ch in np.flatnonzero(starting):
                    events.append(self._event(ch, self._cand[ch], "start", self._run_frame[ch]))
                self._active = np.where(starting, self._cand, self._active)
                self._miss = np.where(starting, 0, self._miss)
                self._last_frame = np.where(starting, frame, self._last_frame)
        return events

    def _event(self, ch: int, digit: int, kind: Literal["start", "end"], frame: int) -> DtmfEvent:
        # Measured on clean tones: the first hit frame starts within ±2 ms of the tone start
        # and the last hit frame about 6 chunks before the tone end.
        sample = frame * self._chunk + (0 if kind == "start" else 6 * self._chunk)
        return DtmfEvent(int(ch), _DIGITS[digit], kind, max(0, int(sample - self._origin[ch])))


def _by_position(kernel: np.ndarray, chunk: int) -> np.ndarray:
    """(frame, k) kernel → (FRAME_CHUNKS * k, chunk): row block c is what the chunk in
    position c of a frame is multiplied by."""
    k = kernel.shape[1]
    parts = kernel.reshape(FRAME_CHUNKS, chunk, k).transpose(0, 2, 1)
    return np.ascontiguousarray(parts.reshape(FRAME_CHUNKS * k, chunk), dtype=np.float32)


def _best_of_four(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index, value and runner-up value of the largest of ``p[0:4]``, elementwise."""
    a, b, c, d = p
    ab, cd = np.maximum(a, b), np.maximum(c, d)
    top = np.maximum(ab, cd)
    second = np.maximum(np.minimum(ab, cd), np.where(ab >= cd, np.minimum(a, b), np.minimum(c, d)))
    index = np.where(ab >= cd, np.where(a >= b, 0, 1), np.where(c >= d, 2, 3))
    return index, top, second


def _hann_response(bins: np.ndarray) -> np.ndarray:
    """Gain of a Hann-windowed DFT for a tone ``bins`` DFT bins (< 2) off its frequency."""
    return np.sinc(bins) / (1.0 - bins * bins)


def detect_digits(samples: np.ndarray, rate: int = 8000) -> str:
    """The digits heard in one channel's audio, in order."""
    samples = np.asarray(samples, dtype=np.float32)
    if rate % 400 or rate < 8000:
        samples = soxr.resample(samples, rate, 8000)
        rate = 8000
    events = DtmfDetector(1, rate).feed(samples[None, :])
    return "".join(e.digit for e in events if e.kind == "start")
