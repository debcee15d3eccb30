"""G.711 lookup-table codec throughput on one core, in Msamples/s.

Two shapes: bulk (one 8 M-sample array: 1000 calls' 1 s of audio, as a batch encode of all
streams of a media tick would see) and per packet (160 samples, one RTP payload, where call
overhead dominates). audioop, where this Python still has it, is shown for reference.

    python bench/g711_bench.py
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode  # noqa: E402

BULK = 8_000_000
PACKET = 160
PACKETS = 20_000


def rate(fn: Callable[[], object], samples: int, seconds: float = 1.0) -> float:
    """Best Msamples/s over repeated runs within ``seconds``."""
    fn()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return samples / best / 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(BULK) * 3000).clip(-32768, 32767).astype(np.int16)
    packets = [pcm[i * PACKET : (i + 1) * PACKET] for i in range(PACKETS)]
    codes = {"ulaw": ulaw_encode(pcm), "alaw": alaw_encode(pcm)}
    code_packets = {
        k: [v[i * PACKET : (i + 1) * PACKET].tobytes() for i in range(PACKETS)]
        for k, v in codes.items()
    }
    codecs = {
        "ulaw": (ulaw_encode, ulaw_decode),
        "alaw": (alaw_encode, alaw_decode),
    }
    print(
        f"G.711 via lookup tables, Msamples/s (bulk = {BULK // 1_000_000} M samples, "
        f"packet = {PACKET} samples)"
    )
    header = ("encode bulk", "decode bulk", "encode pkt", "decode pkt")
    print(f"{'codec':<6} {header[0]:>12} {header[1]:>12} {header[2]:>11} {header[3]:>11}")
    for name, (encode, decode) in codecs.items():
        data, data_packets = codes[name], code_packets[name]
        enc_bulk = rate(lambda e=encode: e(pcm), BULK)
        dec_bulk = rate(lambda d=decode, c=data: d(c), BULK)
        enc_pkt = rate(lambda e=encode: [e(p) for p in packets], PACKET * PACKETS)
        dec_pkt = rate(lambda d=decode, ps=data_packets: [d(p) for p in ps], PACKET * PACKETS)
        print(f"{name:<6} {enc_bulk:>12.0f} {dec_bulk:>12.0f} {enc_pkt:>11.1f} {dec_pkt:>11.1f}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return
    raw = pcm.tobytes()
    ucodes = codes["ulaw"].tobytes()
    enc = rate(lambda: audioop.lin2ulaw(raw, 2), BULK)
    dec = rate(lambda: audioop.ulaw2lin(ucodes, 2), BULK)
    print(f"{'ulaw':<6} {enc:>12.0f} {dec:>12.0f}   (audioop, for reference)")


if __name__ == "__main__":
    main()
