"""The media plane's own thread: sends RTP packets at their deadlines, reads the RTP sockets.

The media clock runs on the event loop, and the loop also runs the flows, the SIP signalling
and the database work. With hundreds of calls a burst of that other work delays a tick by
tens of ms however cheap the tick itself is, and a packet sent from the tick leaves that late.
So the tick only *makes* the packets, one frame (20 ms) ahead of their deadline, and hands
each batch to an :class:`RtpPacer`, whose thread sleeps until the batch's absolute deadline
and sends it: the loop may fall behind by up to a frame without a single packet leaving late.

Between deadlines (at least every 5 ms) the same thread reads the calls' RTP sockets, which
are registered in its own epoll set rather than the loop's: a plain audio packet from the
latched caller is appended to its stream's inbound frames right there (one ``recv`` and a
two-octet check, no callback on the loop); anything else — the caller's first packet, RFC 4733
events, packets from other sources — is handed to the loop (``call_soon_threadsafe``) and
handled there, so the call's state is only ever changed on the loop.

The thread needs the GIL to run its loops, so :meth:`RtpPacer.start` lowers the interpreter's
switch interval to 1 ms (``sys.setswitchinterval``; the default 5 ms would let the loop's
thread keep the GIL past a deadline). A batch holds ``(stream, packets)`` pairs and a stream
no longer ``sending`` (closed, on hold) is skipped; a send that fails (a full socket buffer)
loses that packet, as on the wire. :meth:`RtpPacer.unwatch` and :meth:`RtpPacer.stop_sending`
wait for a batch or a read in flight, so a stream's socket is never touched after it closed.

Written here because no library does this for us: asyncio has no real-time timers, and moving
these loops into a C extension would put the same few lines out of reach of the tests.
"""

from __future__ import annotations

import asyncio
import collections
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

try:  # the socket calls in C (setup.py builds it); Python's socket methods otherwise
    from drivers.sip import _rtpio
except ImportError:  # pragma: no cover - the build is optional
    _rtpio = None

log = structlog.get_logger(__name__)

MAX_EVENTS = 1024  # sockets read per pass at most (the others wait for the next pass)
SWITCH_INTERVAL = 0.001  # s: the longest the loop's thread keeps the GIL from the pacer
RECEIVE_EVERY = 0.005  # s: the longest the RTP sockets go unread while streams are watched

Batch = list[tuple[Any, list[bytes]]]  # (RtpStream, its packets) to send at one deadline
SentHook = Callable[[float, float, int], None]  # (deadline, sent_at, packets), monotonic s


class RtpPacer:
    """One daemon thread that sends each submitted batch at its deadline (``time.monotonic``)
    and reads the watched streams' sockets in between.

    ``on_sent(deadline, sent_at, packets)`` is called in the pacer's thread after each batch
    (``sent_at`` is when its last packet was handed to the socket); it must be quick. Packets
    a stream does not :meth:`take` itself go to ``stream.received`` on ``loop``.
    """

    def __init__(
        self,
        on_sent: SentHook | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        native: bool = True,
    ) -> None:
        self.on_sent = on_sent
        self.loop = loop
        self.native = native and _rtpio is not None  # the C socket calls (IPv4 streams)
        self.packets_out = 0
        self.batches = 0
        self.late_batches = 0  # handed over after their deadline had passed
        self.send_failures = 0  # packets the C sender could not send (full buffer, ICMP)
        self.lock = threading.Lock()  # held while a batch is sent or the sockets are read
        self._queue: collections.deque[tuple[float, Batch]] = collections.deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._poll = select.epoll()
        self._watched: dict[int, Any] = {}  # RTP socket fd -> RtpStream

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
        """Send and read nothing more; batches not yet due are dropped."""
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

    def watch(self, stream: Any) -> None:
        """Read ``stream``'s RTP socket (``stream.sock``) from now on."""
        with self.lock:
            fd = stream.sock.fileno()
            self._watched[fd] = stream
            self._poll.register(fd, select.EPOLLIN)
        self._wake.set()

    def unwatch(self, stream: Any) -> None:
        """Stop reading ``stream``'s socket; once this returns it may be closed."""
        with self.lock:
            for fd, watched in list(self._watched.items()):
                if watched is stream:
                    del self._watched[fd]
                    try:
                        self._poll.unregister(fd)
                    except (OSError, ValueError):  # already closed
                        pass

    def stop_sending(self, stream: Any) -> None:
        """Mark ``stream`` not sending once no batch is being sent: after this returns the
        pacer does not send on its socket again."""
        with self.lock:
            stream.sending = False

    # --- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        queue, wake, lock = self._queue, self._wake, self.lock
        monotonic, sleep = time.monotonic, time.sleep
        while not self._stopping:
            if queue and queue[0][0] <= monotonic():
                deadline, batch = queue.popleft()
                try:
                    with lock:
                        sent = self._send(batch)
                except Exception:  # the thread must outlive any one bad batch
                    log.exception("rtp.pacer_failed")
                    continue
                self.packets_out += sent
                self.batches += 1
                hook = self.on_sent
                if hook is not None:
                    hook(deadline, monotonic(), sent)
                continue
            if self._watched:
                try:
                    with lock:
                        self._receive()
                except Exception:  # the thread must outlive any one bad packet
                    log.exception("rtp.receive_failed")
            elif not queue:
                wake.wait()  # nothing to send or read: sleep until there is
                wake.clear()
                continue
            now = monotonic()
            delay = min(queue[0][0] - now, RECEIVE_EVERY) if queue else RECEIVE_EVERY
            if delay > 0:
                sleep(delay)

    def _receive(self) -> None:
        """One packet from every socket with one waiting (the next pass takes the rest)."""
        watched, loop = self._watched, self.loop
        if self.native:
            assert _rtpio is not None
            for fd, data, ipv4, port in _rtpio.recv_ready(self._poll.fileno(), MAX_EVENTS):
                stream = watched.get(fd)
                if stream is None:
                    continue
                if (ipv4, port) == stream.latched_key and stream.take_latched(data):
                    continue
                addr = (socket.inet_ntoa(ipv4.to_bytes(4, "big")), port)
                if loop is not None:
                    loop.call_soon_threadsafe(stream.received, data, addr)
            return
        for fd, _events in self._poll.poll(0, MAX_EVENTS):
            stream = watched.get(fd)
            if stream is None:
                continue
            try:  # the source even when connected: packets queued before that are checked too
                data, addr = stream.sock.recvfrom(2048)
            except OSError:  # nothing after all, or ICMP unreachable from the caller
                continue
            if not stream.take(data, addr) and loop is not None:
                loop.call_soon_threadsafe(stream.received, data, addr)

    def _send(self, batch: Batch) -> int:
        if not self.native:
            return self.send_now(batch)
        assert _rtpio is not None
        items, others = [], []
        for stream, packets in batch:
            if not stream.sending:  # closed or put on hold since the packets were made
                continue
            if stream.connected:
                fd = stream.fd
                for packet in packets:
                    items.append((fd, packet))
            else:
                others.append((stream, packets))
        sent, failed = _rtpio.send_all(items)
        self.send_failures += failed
        return sent + (self.send_now(others) if others else 0)

    @staticmethod
    def send_now(batch: Batch) -> int:
        """Send a batch with Python's socket methods; returns the packets sent."""
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
