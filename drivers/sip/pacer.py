"""Sends the media plane's RTP packets at their deadlines from a thread of its own.

The media clock runs on the event loop, and the loop also runs the flows, the SIP signalling,
the database work and every received packet's callback. With hundreds of calls a burst of that
other work delays a tick by tens of ms however cheap the tick itself is, and a packet sent
from the tick leaves that late. So the tick only *makes* the packets, one frame (20 ms) ahead
of their deadline, and hands each batch to an :class:`RtpPacer`, whose thread sleeps until
the batch's absolute deadline and sends it: the loop may fall behind by up to a frame without
a single packet leaving late.

The thread needs the GIL to run its sending loop, so :meth:`RtpPacer.start` lowers the
interpreter's switch interval to 1 ms (``sys.setswitchinterval``; the default 5 ms would let
the loop's thread keep the GIL past a deadline). Sockets are used as the streams leave them:
a batch holds ``(stream, packets)`` pairs and a stream no longer ``sending`` (closed, on
hold) is skipped; a send that fails (a full socket buffer) loses that packet, as on the wire.

Written here because no library does this for us: asyncio has no real-time timers, and
sending the packets from a C extension would move the same few lines out of reach of the
tests.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

SWITCH_INTERVAL = 0.001  # s: the longest the loop's thread keeps the GIL from the pacer

Batch = list[tuple[Any, list[bytes]]]  # (RtpStream, its packets) to send at one deadline
SentHook = Callable[[float, float, int], None]  # (deadline, sent_at, packets), monotonic s


class RtpPacer:
    """One daemon thread that sends each submitted batch at its deadline (``time.monotonic``).

    ``on_sent(deadline, sent_at, packets)`` is called in the pacer's thread after each batch
    (``sent_at`` is when its last packet was handed to the socket); it must be quick.
    """

    def __init__(self, on_sent: SentHook | None = None) -> None:
        self.on_sent = on_sent
        self.packets_out = 0
        self.batches = 0
        self.late_batches = 0  # handed over after their deadline had passed
        self.lock = threading.Lock()  # held while a batch is sent (see :meth:`quiesce`)
        self._queue: collections.deque[tuple[float, Batch]] = collections.deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="rtp-pacer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Send nothing more; batches not yet due are dropped. Waits briefly for the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        self._queue.clear()
        self._wake.set()
        thread.join(timeout=1.0)

    def cpu_time(self) -> float:
        """CPU seconds the pacer's thread has used (0 when not running)."""
        thread = self._thread
        if thread is None or thread.ident is None:
            return 0.0
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))

    def submit(self, deadline: float, batch: Batch) -> None:
        """Send ``batch`` at ``deadline`` (monotonic seconds); deadlines must not go back."""
        if not batch:
            return
        if deadline <= time.monotonic():
            self.late_batches += 1
        self._queue.append((deadline, batch))
        self._wake.set()

    # --- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        queue, wake = self._queue, self._wake
        monotonic, sleep = time.monotonic, time.sleep
        while not self._stopping:
            if not queue:
                wake.wait()
                wake.clear()
                continue
            deadline, batch = queue[0]
            delay = deadline - monotonic()
            if delay > 0:
                sleep(delay)
                continue
            queue.popleft()
            try:
                with self.lock:
                    sent = self._send(batch)
            except Exception:  # the thread must outlive any one bad batch
                log.exception("rtp.pacer_failed")
                continue
            self.packets_out += sent
            self.batches += 1
            hook = self.on_sent
            if hook is not None:
                hook(deadline, monotonic(), sent)

    def stop_sending(self, stream: Any) -> None:
        """Mark ``stream`` not sending once no batch is being sent: after this returns the
        pacer does not touch its socket again, so it may be closed (and its number reused)."""
        with self.lock:
            stream.sending = False

    @staticmethod
    def _send(batch: Batch) -> int:
        out = 0
        for stream, packets in batch:
            if not stream.sending:  # closed or put on hold since the packets were made
                continue
            try:
                if stream.connected:  # to the latched caller: no address to resolve
                    send = stream.sock.send
                    for packet in packets:
                        send(packet)
                else:
                    sendto, remote = stream.sock.sendto, stream.remote
                    for packet in packets:
                        sendto(packet, remote)
            except OSError:  # a full socket buffer, ICMP unreachable: the packet is lost
                stream.send_errors += 1
                continue
            out += len(packets)
        return out
