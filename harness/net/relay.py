"""A shaping, counting TCP relay between parties: network emulation in user space.

The parties (separate processes on one host's loopback, or on the relay's ``host``)
connect *through* a :class:`Relay`.  Given routes ``(src, dst, target_port)`` it listens
on a fresh port per route (:meth:`Relay.port_for`) and forwards every accepted
connection to ``host:target_port``, retrying until ``connect_timeout_s``
while the target is not listening yet.  On route ``(i, j)`` the bytes the
connecting side sends are the directed link ``(i, j)`` and the replies the link
``(j, i)``.  Each directed link is shaped on its own (:class:`LinkShape`: one-way
delay, jitter, a bandwidth given as a TCP payload rate, see `ETHERNET_GOODPUT`),
may carry one fault (`harness.net.faults`), and is counted on its own
(:class:`RelayStats`: bytes, socket reads, flights, causal rounds).

In lock-step mode (``lockstep=``, a function telling whether every party is
blocked waiting) the relay holds everything it reads and delivers it all at
once only when every party is waiting and nothing is in transit: the parties
then run in synchronous rounds, and ``rounds`` counts those deliveries, a figure
of the protocol and the query that no timing changes.  It assumes parties send at
once (TCP_NODELAY, as asyncio and MP-SPDZ set): bytes Nagle holds in a party's
kernel are invisible to the relay.

It assumes, and keeps: TCP byte order (chunks never reorder, whatever the
jitter), bounded queues (a direction stops reading while its queue or the
destination's buffer is full), and FINs delivered after the data before them.
A link with no delay, no bandwidth limit and no fault is a pass-through.  The
relay runs in its own thread with its own event loop.  The shaping and counting
rules in full, the timer precision and the relay's measured overhead are in the
README (Networks, "The relay").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import math
import os
import random
import select
import selectors
import socket
import struct
import termios
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.net.faults import Fault, FaultState

Link = tuple[int, int]
Route = tuple[int, int, int]

_WRITE_HIGH_WATER = 1 << 20  # transport write-buffer high-water mark (bytes)
_MIN_SEGMENT = 1448  # one Ethernet TCP segment of payload
_MAX_SEGMENT = 64 * 1024
_LATENCY_WINDOW = 64  # timer wake-ups whose median lateness sets the lead
_MAX_LEAD = 0.0005  # never arm a timer more than 0.5 ms early
_RETRY_S = 0.05  # between attempts to connect to a target that is not listening yet
_LOCKSTEP_POLL_S = 0.0005  # lock-step: how often to look whether every party waits
_LOCKSTEP_QUIET = 2  # lock-step: consecutive looks that must find every party waiting
ETHERNET_GOODPUT = 1448 / 1514  # TCP payload per Ethernet frame (MSS 1448 with timestamps)


@dataclass(frozen=True)
class LinkShape:
    """How one direction of a link behaves: one-way delay, jitter, bandwidth."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_mbit: float | None = None  # None: as fast as the relay forwards

    def __post_init__(self) -> None:
        for name in ("delay_ms", "jitter_ms"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"LinkShape.{name} must be a finite number >= 0, not {value!r}")
        bw = self.bandwidth_mbit
        if bw is not None and not (isinstance(bw, (int, float)) and math.isfinite(bw) and bw > 0):
            raise ValueError(f"LinkShape.bandwidth_mbit must be > 0 or None, not {bw!r}")

    @property
    def passthrough(self) -> bool:
        """True when this direction is forwarded as fast as possible, unshaped."""
        return self.delay_ms == 0 and self.jitter_ms == 0 and self.bandwidth_mbit is None


@dataclass(frozen=True)
class LinkStats:
    """What crossed one directed link; times are seconds since the relay started."""

    bytes: int = 0
    messages: int = 0  # socket reads by the relay, not engine messages
    flights: int = 0
    max_depth: int = 0
    first_read_s: float | None = None
    last_read_s: float | None = None
    first_delivered_s: float | None = None
    last_delivered_s: float | None = None


@dataclass(frozen=True)
class RelayStats:
    """A snapshot of the relay's counters (see the module docstring for definitions)."""

    parties: int
    bytes_by_link: dict[Link, int]
    messages_by_link: dict[Link, int]
    flights_by_link: dict[Link, int]
    rounds: int | None  # None: not counted (the links' relays ran apart, `merged`)
    links: dict[Link, LinkStats] = field(default_factory=dict)
    connections: int = 0  # connections accepted since start (or the last reset)
    queued_bytes: int = 0  # held by the relay now, read but not yet due (bounded by back-pressure)
    faults_fired: dict[Link, dict] = field(default_factory=dict)  # per faulted link, FaultState.event()

    def _matrix(self, values: Mapping[Link, int]) -> list[list[int]]:
        m = self.parties
        out = [[0] * m for _ in range(m)]
        for (i, j), v in values.items():
            out[i][j] = v
        return out

    @property
    def bytes_total(self) -> int:
        return sum(self.bytes_by_link.values())

    @classmethod
    def merged(cls, parts: Iterable[RelayStats], parties: int) -> RelayStats:
        """The figures of relays that each carried other connections (one per node): a
        link's counts summed over the relays (the two relays of a pair both carry its
        links, whichever side connects), its details and fault from the relay that carried
        its bytes, and no rounds, since a causal chain crosses relays that do not see
        each other's deliveries."""
        parts = list(parts)

        def summed(name: str) -> dict[Link, int]:
            out: dict[Link, int] = {}
            for p in parts:
                for k, v in getattr(p, name).items():
                    out[k] = out.get(k, 0) + v
            return out

        def carrier(link: Link) -> RelayStats:
            return max((p for p in parts if link in p.bytes_by_link), key=lambda p: p.bytes_by_link[link])

        links = summed("bytes_by_link")
        return cls(
            parties,
            links,
            summed("messages_by_link"),
            summed("flights_by_link"),
            None,
            {k: carrier(k).links[k] for k in links if k in carrier(k).links},
            sum(p.connections for p in parts),
            sum(p.queued_bytes for p in parts),
            {k: carrier(k).faults_fired[k] for k in links if k in carrier(k).faults_fired},
        )

    def to_json(self) -> dict:
        """JSON-ready: per-link figures as m x m matrices, row = sender, column = receiver."""
        return {
            "parties": self.parties,
            "bytes_by_link": self._matrix(self.bytes_by_link),
            "messages_by_link": self._matrix(self.messages_by_link),
            "flights_by_link": self._matrix(self.flights_by_link),
            "rounds": self.rounds,
            "bytes_total": self.bytes_total,
            "connections": self.connections,
            "faults_fired": {f"{s}->{d}": event for (s, d), event in sorted(self.faults_fired.items())},
        }


def routes_for_full_mesh(parties: int, real_ports: list[int]) -> list[Route]:
    """MPyC's connect direction: party i connects to party j for i < j, which listens.

    One route per pair, ``(i, j, real_ports[j])``; it carries the directed links
    ``(i, j)`` and ``(j, i)``.
    """
    if len(real_ports) != parties:
        raise ValueError(f"{parties} parties need {parties} ports, got {len(real_ports)}")
    return [(i, j, real_ports[j]) for i in range(parties) for j in range(i + 1, parties)]


class _FineTimerEpollSelector(selectors.EpollSelector):
    """epoll whose timed waits have microsecond resolution.

    ``epoll_wait`` takes whole milliseconds (Python rounds up), so a 1 ms timer
    could fire up to 1 ms late.  A timed wait is done with ``select()`` (which
    takes microseconds) on the epoll descriptor itself, then epoll is polled.
    """

    def select(self, timeout: float | None = None) -> list:
        if timeout is not None and timeout > 0:
            try:
                select.select((self.fileno(),), (), (), timeout)
            except ValueError:  # descriptor >= FD_SETSIZE: millisecond waits it is
                pass
            else:
                timeout = 0
        return super().select(timeout)


def _fine_timer_slack() -> None:
    """Ask Linux for 1 ns timer slack in this thread (the default, 50 us, delays every timer)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK, 1 ns
    except (OSError, AttributeError):
        pass


def _realtime() -> bool:
    """Put this thread under SCHED_RR at the lowest real-time priority, where allowed (root
    or CAP_SYS_NICE): a woken relay then runs at once instead of queueing behind parties that
    keep every core busy, as a network's own hardware would.  It sleeps in the loop's wait
    whenever nothing is due, and Linux caps real-time threads at 95% of a core."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(os.sched_get_priority_min(os.SCHED_RR)))
    except (OSError, AttributeError):  # not permitted, or not Linux
        return False
    return True


def _new_loop(kind: str, all_passthrough: bool) -> tuple[asyncio.AbstractEventLoop, str]:
    if kind not in ("auto", "uvloop", "asyncio"):
        raise ValueError(f"loop must be 'auto', 'uvloop' or 'asyncio', not {kind!r}")
    if kind == "uvloop" or (kind == "auto" and all_passthrough):
        try:
            import uvloop  # type: ignore[import-not-found]
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop(), "uvloop"
    return asyncio.SelectorEventLoop(_FineTimerEpollSelector()), "asyncio"


class _LinkState:
    """Mutable counters of one directed link (touched only in the loop thread)."""

    __slots__ = (
        "bytes",
        "messages",
        "flights",
        "flight_open",
        "max_depth",
        "first_read",
        "last_read",
        "first_delivered",
        "last_delivered",
    )

    def __init__(self) -> None:
        self.bytes = self.messages = self.flights = self.max_depth = 0
        self.flight_open = False
        self.first_read: float | None = None
        self.last_read: float | None = None
        self.first_delivered: float | None = None
        self.last_delivered: float | None = None

    def frozen(self, t0: float) -> LinkStats:
        def rel(t: float | None) -> float | None:
            return None if t is None else t - t0

        return LinkStats(
            self.bytes,
            self.messages,
            self.flights,
            self.max_depth,
            rel(self.first_read),
            rel(self.last_read),
            rel(self.first_delivered),
            rel(self.last_delivered),
        )


class _Core:
    """The loop thread's state: links, what each party has been delivered, rounds."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        parties: int,
        shapes: dict[Link, LinkShape],
        max_queue_bytes: int,
        connect_timeout_s: float,
        rng: random.Random,
        faults: Mapping[Link, Fault] | None = None,
        lockstep: Callable[[], bool] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.loop = loop
        self.host = host  # where the relay listens and reaches its targets
        self.parties = parties
        self.lockstep = lockstep
        self.held: set[_Direction] = set()  # lock-step: directions holding data
        self.quiet = 0  # lock-step: consecutive looks that found every party waiting
        self.shapes = shapes
        # One state per faulted link, shared by its connections; not reset by reset().
        self.fault_states = {link: FaultState(f) for link, f in (faults or {}).items()}
        self.max_queue_bytes = max_queue_bytes
        self.connect_timeout_s = connect_timeout_s
        self.rng = rng
        self.t0 = time.monotonic()
        self.conns: set[_Conn] = set()
        self.servers: list[asyncio.AbstractServer] = []
        # Timer wake-up latency compensation: timers are armed `lead` seconds early, where
        # `lead` is the median lateness of the last _LATENCY_WINDOW timer wake-ups (capped).
        self.lead = 0.0
        self.latencies: list[float] = []
        self.timers_fired = 0
        self.reset()

    def timer_fired(self, late: float) -> None:
        """Record how late a timer fired; re-estimate `lead` every 16 wake-ups."""
        lat = self.latencies
        i = self.timers_fired % _LATENCY_WINDOW
        if len(lat) < _LATENCY_WINDOW:
            lat.append(late)
        else:
            lat[i] = late
        self.timers_fired += 1
        if self.timers_fired % 16 == 0:
            ordered = sorted(lat)
            self.lead = min(_MAX_LEAD, max(0.0, ordered[len(ordered) // 2]))

    def tick(self) -> None:
        """Lock-step: deliver everything held once every party waits and nothing moves."""
        self.loop.call_later(_LOCKSTEP_POLL_S, self.tick)
        assert self.lockstep is not None
        if not self.held or self._in_transit() or not self.lockstep():
            self.quiet = 0
            return
        self.quiet += 1
        if self.quiet < _LOCKSTEP_QUIET:
            return
        self.quiet = 0
        released, self.held = self.held, set()
        if any(d.queued for d in released):
            self.rounds += 1
        for d in released:
            d.flush()

    def _in_transit(self) -> bool:
        """Bytes a party sent that the relay has not read, or released bytes not yet
        handed to the kernel, or a connection still being wired."""
        for conn in self.conns:
            if conn.up is None:
                return True
            for side in (conn.client, conn.target):
                t = side.transport if side is not None else None
                if t is None:
                    continue
                if t.get_write_buffer_size():
                    return True
                sock = t.get_extra_info("socket")
                if sock is not None and _unread(sock.fileno()):
                    return True
        return False

    def reset(self) -> None:
        self.links = {link: _LinkState() for link in self.shapes}
        self.delivered_depth = [0] * self.parties
        self.rounds = 0
        self.connections = 0
        for conn in self.conns:
            conn.rebind()

    def snapshot(self) -> RelayStats:
        links = {k: s.frozen(self.t0) for k, s in sorted(self.links.items())}
        return RelayStats(
            self.parties,
            {k: s.bytes for k, s in links.items()},
            {k: s.messages for k, s in links.items()},
            {k: s.flights for k, s in links.items()},
            self.rounds,
            links,
            self.connections,
            sum(d.queued for c in self.conns for d in (c.up, c.down) if d is not None),
            {k: f.event() for k, f in sorted(self.fault_states.items())},
        )


def _unread(fd: int) -> int:
    """Bytes waiting in a socket's receive queue."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


_SEVER = object()  # queued by a drop fault: close the connection when it comes due


class _Direction:
    """One direction of one connection: read from `src_side`, shape, write to `dst_side`."""

    __slots__ = (
        "core",
        "conn",
        "src",
        "dst",
        "state",
        "reverse",
        "passthrough",
        "delay",
        "jitter",
        "rate",
        "segment",
        "queue",
        "queued",
        "link_free",
        "last_due",
        "timer",
        "eof_read",
        "finished",
        "paused_queue",
        "paused_writer",
        "reading_paused",
        "src_side",
        "dst_side",
        "fault",
    )

    def __init__(
        self, core: _Core, conn: _Conn, src: int, dst: int, src_side: _Side, dst_side: _Side
    ) -> None:
        shape = core.shapes[(src, dst)]
        self.core, self.conn, self.src, self.dst = core, conn, src, dst
        self.src_side, self.dst_side = src_side, dst_side
        self.bind()
        self.fault: FaultState | None = core.fault_states.get((src, dst))
        self.passthrough = shape.passthrough and self.fault is None and core.lockstep is None
        self.delay = shape.delay_ms / 1e3
        self.jitter = shape.jitter_ms / 1e3
        self.rate = None if shape.bandwidth_mbit is None else shape.bandwidth_mbit * 1e6 / 8
        self.segment = (
            _MAX_SEGMENT if self.rate is None else int(min(_MAX_SEGMENT, max(_MIN_SEGMENT, self.rate / 1000)))
        )
        self.queue: deque[tuple[float, Any, int]] = deque()  # (due, data | None for EOF, depth)
        self.queued = 0
        self.link_free = 0.0
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.eof_read = False
        self.finished = False
        self.paused_queue = self.paused_writer = self.reading_paused = False

    def bind(self) -> None:
        self.state = self.core.links[(self.src, self.dst)]
        self.reverse = self.core.links[(self.dst, self.src)]

    # -- reading ---------------------------------------------------------------------------
    def on_data(self, data: bytes) -> None:
        core, st = self.core, self.state
        now = time.monotonic()
        n = len(data)
        st.bytes += n
        st.messages += 1
        if st.first_read is None:
            st.first_read = now
        st.last_read = now
        if not st.flight_open:
            st.flights += 1
            st.flight_open = True
        depth = core.delivered_depth[self.src] + 1
        if depth > st.max_depth:
            st.max_depth = depth
            if depth > core.rounds and core.lockstep is None:
                core.rounds = depth
        if self.finished:  # the destination is gone: count, drop
            if self.fault is not None:
                self.fault.skip(n)
            return
        if self.passthrough:
            self.dst_side.transport.write(data)  # type: ignore[union-attr]  # set until finished
            self._delivered(depth, now)
            return
        hold, sever = 0.0, False
        if self.fault is not None:
            data, hold, sever = self.fault.apply(data, now - core.t0)
            n = len(data)
        t = core.loop.time()
        if self.rate is None:
            if n:
                self._enqueue(t, data, depth, n, hold)
        else:
            seg = self.segment
            view = memoryview(data) if n > seg else data
            for off in range(0, n, seg):
                piece = view[off : off + seg] if n > seg else data
                size = len(piece)
                start = t if t > self.link_free else self.link_free
                self.link_free = start + size / self.rate
                self._enqueue(self.link_free, piece, depth, size, hold if off == 0 else 0.0)
        if sever:  # a drop fault: close the connection once what came before is delivered
            self._enqueue(max(t, self.link_free), _SEVER, 0, 0)
        if self.queued >= core.max_queue_bytes and not self.paused_queue:
            self.paused_queue = True
            self._update_reading()

    def on_eof(self) -> None:
        if self.eof_read:
            return
        self.eof_read = True
        if self.finished:
            return
        if not self.queue and self.passthrough:
            self._send_eof()
            return
        t = self.core.loop.time()
        if self.rate is not None and self.link_free > t:
            t = self.link_free
        self._enqueue(t, None, 0, 0)

    def _enqueue(self, t: float, data: Any, depth: int, size: int, hold: float = 0.0) -> None:
        if self.core.lockstep is not None:  # held until every party waits (Core.tick)
            self.queue.append((0.0, data, depth))
            self.queued += size
            self.core.held.add(self)
            return
        due = t + self.delay + hold
        if self.jitter:
            due += self.core.rng.uniform(-self.jitter, self.jitter)
            if due < t:
                due = t
        if due < self.last_due:
            due = self.last_due
        self.last_due = due
        self.queue.append((due, data, depth))
        self.queued += size
        if self.timer is None:
            self.timer = self.core.loop.call_at(due - self.core.lead, self.flush)

    # -- delivering ------------------------------------------------------------------------
    def flush(self) -> None:
        core = self.core
        loop = core.loop
        now = loop.time()
        if self.timer is not None:
            core.timer_fired(now - self.timer.when())
            self.timer = None
        if self.finished:
            return
        q = self.queue
        out: list = []
        size = depth = 0
        eof = sever = False
        horizon = now + core.lead  # due within the loop's usual lateness: deliver now
        while q and q[0][0] <= horizon:
            _, data, d = q.popleft()
            if data is None:
                eof = True
                break
            if data is _SEVER:
                sever = True
                break
            out.append(data)
            size += len(data)
            if d > depth:
                depth = d
        if out:
            self.dst_side.transport.write(  # type: ignore[union-attr]  # set until finished
                out[0] if len(out) == 1 else b"".join(out)
            )
            self.queued -= size
            self._delivered(depth, time.monotonic())
        if sever:
            self.conn.sever()
            return
        if eof:
            self._send_eof()
            return
        if q:
            self.timer = loop.call_at(q[0][0] - core.lead, self.flush)
        if self.paused_queue and self.queued <= core.max_queue_bytes // 2:
            self.paused_queue = False
            self._update_reading()

    def _delivered(self, depth: int, now: float) -> None:
        core, st = self.core, self.state
        if depth > core.delivered_depth[self.dst]:
            core.delivered_depth[self.dst] = depth
        self.reverse.flight_open = False
        if st.first_delivered is None:
            st.first_delivered = now
        st.last_delivered = now

    def _send_eof(self) -> None:
        transport = self.dst_side.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:
                pass
        self.finish()

    def finish(self) -> None:
        """No more writing in this direction (EOF delivered, or the destination is gone)."""
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.queued = 0
        self.paused_queue = self.paused_writer = False
        self._update_reading()
        self.conn.maybe_close()

    # -- back-pressure ---------------------------------------------------------------------
    def set_writer_paused(self, paused: bool) -> None:
        self.paused_writer = paused
        self._update_reading()

    def _update_reading(self) -> None:
        want = self.paused_queue or self.paused_writer
        if want == self.reading_paused:
            return
        transport = self.src_side.transport
        if transport is None or transport.is_closing():
            return
        self.reading_paused = want
        if want:
            transport.pause_reading()
        else:
            transport.resume_reading()


class _Side(asyncio.Protocol):
    """One socket of a relayed connection (the party that connected, or the target)."""

    def __init__(self, conn: _Conn, is_client: bool) -> None:
        self.conn = conn
        self.is_client = is_client
        self.transport: asyncio.Transport | None = None
        self.reader: _Direction | None = None  # the direction whose source is this socket
        self.writer: _Direction | None = None  # the direction that writes into this socket
        self.early: list[bytes] = []  # read before the target answered (uvloop reads at once)
        self.early_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)  # type: ignore[attr-defined]
        if self.is_client:
            self.conn.client_made(self)
        else:
            self.conn.target_made(self)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is None:  # not wired yet: hold it, and stop reading until the target answers
            self.early.append(data)
            self.transport.pause_reading()  # type: ignore[union-attr]
            return
        reader.on_data(data)

    def eof_received(self) -> bool:
        if self.reader is not None:
            self.reader.on_eof()
        else:
            self.early_eof = True
        return True  # half-close: keep writing the other direction

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.side_lost(self)

    def pause_writing(self) -> None:
        if self.writer is not None:
            self.writer.set_writer_paused(True)

    def resume_writing(self) -> None:
        if self.writer is not None:
            self.writer.set_writer_paused(False)


class _Conn:
    """One relayed connection of a route: the client's socket and the target's."""

    def __init__(self, core: _Core, route: Route) -> None:
        self.core = core
        self.src, self.dst, self.port = route
        self.client: _Side | None = None
        self.target: _Side | None = None
        self.up: _Direction | None = None  # src -> dst
        self.down: _Direction | None = None  # dst -> src
        self.task: asyncio.Task | None = None
        self.closed = False

    def client_made(self, side: _Side) -> None:
        self.client = side
        side.transport.pause_reading()  # type: ignore[union-attr]  # until the target answers
        self.core.conns.add(self)
        self.core.connections += 1
        self.task = self.core.loop.create_task(self._connect())

    async def _connect(self) -> None:
        loop = self.core.loop
        deadline = loop.time() + self.core.connect_timeout_s
        while not self.closed:
            try:
                await loop.create_connection(lambda: _Side(self, False), self.core.host, self.port)
                return
            except OSError:
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(_RETRY_S)
        self.abort()

    def target_made(self, side: _Side) -> None:
        if self.closed or self.client is None:
            side.transport.abort()  # type: ignore[union-attr]
            return
        self.target = side
        client = self.client
        self.up = _Direction(self.core, self, self.src, self.dst, client, side)
        self.down = _Direction(self.core, self, self.dst, self.src, side, client)
        client.reader, client.writer = self.up, self.down
        side.reader, side.writer = self.down, self.up
        early, client.early = client.early, []
        for data in early:
            self.up.on_data(data)
        if client.early_eof:
            self.up.on_eof()
        elif client.transport is not None and not self.up.reading_paused:
            client.transport.resume_reading()

    def rebind(self) -> None:
        for d in (self.up, self.down):
            if d is not None:
                d.bind()

    def side_lost(self, side: _Side) -> None:
        side.transport = None
        if self.up is None or self.down is None:  # lost before both ends were connected
            self.abort()
            return
        incoming, outgoing = (self.up, self.down) if side is self.client else (self.down, self.up)
        outgoing.finish()  # nothing more can be written to this socket
        incoming.on_eof()  # deliver what it sent before it went, then a FIN
        self.maybe_close()

    def sever(self) -> None:
        """Close the connection both ways now (a drop fault): what was already written
        to a socket is flushed before its FIN, whatever is still queued is lost."""
        for d in (self.up, self.down):
            if d is not None:
                d.finish()
        self.maybe_close()

    def maybe_close(self) -> None:
        if self.up is None or self.down is None or not (self.up.finished and self.down.finished):
            return
        for side in (self.client, self.target):
            if side is not None and side.transport is not None:
                side.transport.close()  # flushes what was written, then closes
        self._forget()

    def abort(self) -> None:
        """Drop everything now (a failed connect, or the relay stopping)."""
        self.closed = True
        if self.task is not None and not self.task.done() and self.task is not asyncio.current_task():
            self.task.cancel()
        for d in (self.up, self.down):
            if d is not None and d.timer is not None:
                d.timer.cancel()
                d.timer = None
        for side in (self.client, self.target):
            if side is not None and side.transport is not None:
                side.transport.abort()
        self._forget()

    def _forget(self) -> None:
        self.closed = True
        self.core.conns.discard(self)


class Relay:
    """A shaping, counting TCP relay; see the module docstring.

    ``shape`` is one of: a :class:`LinkShape` for every directed link; a function
    ``(src, dst) -> LinkShape``; a mapping ``{(src, dst): LinkShape}`` of
    per-directed-link overrides of ``default``; or None (``default`` everywhere).

    Use as ``with Relay(routes, shape) as relay: ...`` or ``start()`` / ``stop()``.

    ``parties``: the size of the matrices in ``stats().to_json()`` (default: the
    highest party in the routes + 1).  ``max_queue_bytes``: what a direction may
    hold before it stops reading its source.  ``connect_timeout_s``: how long to
    retry connecting to a target that does not listen yet before dropping the
    client.  ``seed``: for the jitter.  ``loop``: "auto", "asyncio" or "uvloop".
    ``faults``: ``{(src, dst): Fault}``, at most one per directed link (see
    ``harness.net.faults``); a faulted direction is never a pass-through.
    ``lockstep``: a function telling whether every party is blocked waiting; given,
    the relay runs the parties in synchronous rounds (module docstring), shapes
    nothing, never stops reading, and ``rounds`` counts the rounds.  ``realtime``: run
    the relay's thread under SCHED_RR where allowed, except in lock-step, whose barrier
    polls (``scheduling`` says which it got).  ``host``: the address the relay listens on
    and reaches its targets at (its node's, where the parties are bound to it).
    """

    def __init__(
        self,
        routes: Iterable[Route],
        shape: LinkShape | Callable[[int, int], LinkShape] | Mapping[Link, LinkShape] | None = None,
        *,
        default: LinkShape = LinkShape(),
        parties: int | None = None,
        max_queue_bytes: int = 4 << 20,
        connect_timeout_s: float = 60.0,
        seed: int | None = None,
        loop: str = "auto",
        faults: Mapping[Link, Fault] | None = None,
        lockstep: Callable[[], bool] | None = None,
        realtime: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.routes: list[Route] = [(int(s), int(d), int(p)) for s, d, p in routes]
        seen: set[Link] = set()
        for s, d, p in self.routes:
            if s == d or s < 0 or d < 0:
                raise ValueError(f"route ({s}, {d}, {p}): parties must be distinct and >= 0")
            if not 0 < p < 65536:
                raise ValueError(f"route ({s}, {d}, {p}): not a TCP port")
            if (s, d) in seen:
                raise ValueError(f"route ({s}, {d}) given twice")
            seen.add((s, d))
        top = max((max(s, d) for s, d, _ in self.routes), default=-1) + 1
        self.parties = top if parties is None else parties
        if self.parties < top:
            raise ValueError(f"parties={parties} but the routes name party {top - 1}")
        if max_queue_bytes < _MAX_SEGMENT:
            raise ValueError(f"max_queue_bytes must be at least {_MAX_SEGMENT}")
        self._shapes: dict[Link, LinkShape] = {}
        for s, d, _ in self.routes:
            for link in ((s, d), (d, s)):
                self._shapes[link] = self._resolve(shape, default, *link)
        self._faults: dict[Link, Fault] = {}
        for link, fault in (faults or {}).items():
            s, d = (int(x) for x in link)
            if (s, d) not in self._shapes:
                raise ValueError(f"fault on link {s}->{d}: no route carries that link")
            if not isinstance(fault, Fault):
                raise TypeError(f"fault on link {s}->{d} is {fault!r}, not a Fault")
            if fault.needs_calibration:
                raise ValueError(
                    f"fault on link {s}->{d} is at fraction {fault.fraction} of the "
                    "stream; resolve it to an offset first (Fault.at_fraction_of)"
                )
            self._faults[(s, d)] = fault
        self._lockstep = lockstep
        self._max_queue_bytes = max_queue_bytes if lockstep is None else 1 << 62
        self._connect_timeout_s = connect_timeout_s
        self._seed = seed
        self._loop_kind = loop
        self.loop_name: str | None = None  # "asyncio" or "uvloop" once started
        self._realtime = realtime and lockstep is None  # lock-step's barrier polls: no priority
        self.scheduling: str | None = None  # "realtime" or "normal" once started
        self._ports: dict[Link, int] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._core: _Core | None = None
        self._final: RelayStats | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _resolve(shape: Any, default: LinkShape, src: int, dst: int) -> LinkShape:
        if shape is None:
            out = default
        elif isinstance(shape, LinkShape):
            out = shape
        elif isinstance(shape, Mapping):
            out = shape.get((src, dst), default)
        elif callable(shape):
            out = shape(src, dst)
        else:
            raise TypeError(f"shape must be a LinkShape, a mapping or a function, not {type(shape)}")
        if not isinstance(out, LinkShape):
            raise TypeError(f"shape for link ({src}, {dst}) is {out!r}, not a LinkShape")
        return out

    # -- configuration ---------------------------------------------------------------------
    @property
    def faults(self) -> dict[Link, Fault]:
        return dict(self._faults)

    def shape(self, src: int, dst: int) -> LinkShape:
        """The shape of the directed link src -> dst."""
        try:
            return self._shapes[(src, dst)]
        except KeyError:
            raise KeyError(f"no route carries the link ({src}, {dst})") from None

    def port_for(self, src: int, dst: int) -> int:
        """The loopback port where party src must connect to reach party dst."""
        if not self._ports:
            raise RuntimeError("the relay is not started")
        try:
            return self._ports[(src, dst)]
        except KeyError:
            raise KeyError(f"no route ({src}, {dst}, ...): src connects to dst through it") from None

    @property
    def ports(self) -> dict[Link, int]:
        return dict(self._ports)

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> Relay:
        """Listen on one fresh loopback port per route; returns once they all listen."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the relay is already started")
            all_pass = (
                not self._faults
                and self._lockstep is None
                and all(s.passthrough for s in self._shapes.values())
            )
            loop, self.loop_name = _new_loop(self._loop_kind, all_pass)
            self._loop = loop
            self._core = _Core(
                loop,
                self.parties,
                self._shapes,
                self._max_queue_bytes,
                self._connect_timeout_s,
                random.Random(self._seed),
                self._faults,
                self._lockstep,
                self.host,
            )
            self._final = None
            ready: concurrent.futures.Future[dict[Link, int]] = concurrent.futures.Future()
            self._thread = threading.Thread(
                target=self._run, args=(ready,), name=f"cohortbench-relay-{id(self):x}", daemon=True
            )
            self._thread.start()
            try:
                self._ports = ready.result(timeout=30)
            except BaseException:
                self._thread.join(timeout=10)
                self._thread = self._loop = self._core = None
                raise
            return self

    def _run(self, ready: concurrent.futures.Future) -> None:
        loop, core = self._loop, self._core
        assert loop is not None and core is not None
        asyncio.set_event_loop(loop)
        _fine_timer_slack()
        self.scheduling = "realtime" if self._realtime and _realtime() else "normal"
        try:
            try:
                ports = loop.run_until_complete(self._listen(core))
            except BaseException as e:
                ready.set_exception(e)
                return
            ready.set_result(ports)
            if core.lockstep is not None:
                core.tick()
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _listen(self, core: _Core) -> dict[Link, int]:
        ports: dict[Link, int] = {}
        try:
            for route in self.routes:

                def accept(r: Route = route) -> _Side:
                    return _Side(_Conn(core, r), True)

                server = await core.loop.create_server(accept, core.host, 0, backlog=128)
                core.servers.append(server)
                ports[(route[0], route[1])] = server.sockets[0].getsockname()[1]
        except BaseException:
            await self._shutdown(core)
            raise
        return ports

    @staticmethod
    async def _shutdown(core: _Core) -> None:
        for server in core.servers:
            server.close()
        for server in core.servers:
            await server.wait_closed()
        for conn in list(core.conns):
            conn.abort()
        await asyncio.sleep(0)  # let the aborted transports run connection_lost

    def stop(self) -> None:
        """Close the listening ports and every connection, stop the thread; idempotent."""
        with self._lock:
            thread, loop, core = self._thread, self._loop, self._core
            if thread is None or loop is None or core is None:
                return
            try:
                fut = asyncio.run_coroutine_threadsafe(self._stop_in_loop(core), loop)
                self._final = fut.result(timeout=30)
            finally:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=30)
                self._thread = self._loop = self._core = None
                self._ports = {}

    async def _stop_in_loop(self, core: _Core) -> RelayStats:
        stats = core.snapshot()
        await self._shutdown(core)
        return stats

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- counters --------------------------------------------------------------------------
    def _in_loop(self, fn: Callable[[], Any]) -> Any:
        loop = self._loop
        if loop is None:
            return None
        done: concurrent.futures.Future = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(fn())
            except BaseException as e:  # pragma: no cover - handed to the caller
                done.set_exception(e)

        loop.call_soon_threadsafe(call)
        return done.result(timeout=30)

    def stats(self) -> RelayStats:
        """The counters now (or, once stopped, as they were when it stopped)."""
        with self._lock:
            core = self._core
            if core is not None:
                return self._in_loop(core.snapshot)
            if self._final is not None:
                return self._final
            empty = {link: 0 for link in sorted(self._shapes)}
            return RelayStats(
                self.parties,
                dict(empty),
                dict(empty),
                dict(empty),
                0,
                {link: LinkStats() for link in empty},
                0,
                0,
                {k: FaultState(f).event() for k, f in sorted(self._faults.items())},
            )

    def reset_stats(self) -> None:
        """Zero every counter (e.g. after the parties have connected)."""
        with self._lock:
            if self._core is not None:
                self._in_loop(self._core.reset)
