"""Micro-benchmarks of the relay at 0 ms: bulk throughput and ping-pong latency, relay vs direct.

The sender and the receiver are separate processes (as the parties are); only the relay
runs in the test process.  `pytest --benchmark-enable tests/test_bench_relay.py` prints
the times; MB/s and microseconds per round trip are in each benchmark's extra_info.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from harness.net.relay import Relay
from test_relay import SERVER  # sink: reads to EOF, answers one JSON line; echo

MB = 1 << 20
BULK = 64 * MB
PINGS = 2000

# Per stdin line "bulk PORT BYTES" or "ping PORT COUNT": do it, print the seconds it took.
CLIENT = r"""
import socket, sys, time
block = b"\x5a" * (1 << 20)
for line in sys.stdin:
    what, port, n = line.split()
    port, n = int(port), int(n)
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = time.perf_counter()
    if what == "bulk":
        left = n
        while left:
            k = min(left, len(block))
            s.sendall(block[:k] if k < len(block) else block)
            left -= k
        s.shutdown(socket.SHUT_WR)
        assert s.makefile("rb").readline().startswith(b"{")  # the sink's report
    else:
        for _ in range(n):
            s.sendall(b"p" * 32)
            got = 0
            while got < 32:
                got += len(s.recv(64))
    dt = time.perf_counter() - t
    s.close()
    print(dt, flush=True)
"""


@contextmanager
def process(code: str, *args: str) -> Iterator[subprocess.Popen]:
    p = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield p
    finally:
        p.kill()
        p.wait()
        for f in (p.stdin, p.stdout):
            f.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, int]]:
    with process(SERVER, "sink") as sink, process(SERVER, "echo") as echo:
        yield {"sink": int(sink.stdout.readline()), "echo": int(echo.stdout.readline())}


@pytest.fixture(scope="module")
def client() -> Iterator[subprocess.Popen]:
    with process(CLIENT) as p:
        yield p


def ask(client: subprocess.Popen, what: str, port: int, n: int) -> float:
    client.stdin.write(f"{what} {port} {n}\n")
    client.stdin.flush()
    return float(client.stdout.readline())


LOOPS = ["direct", "asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])


@contextmanager
def path(kind: str, target: int) -> Iterator[int]:
    if kind == "direct":
        yield target
        return
    with Relay([(0, 1, target)], loop=kind) as relay:
        yield relay.port_for(0, 1)


def _median_run(
    benchmark, client: subprocess.Popen, kind: str, port: int, what: str, n: int, rounds: int
) -> float:
    """The median seconds of `rounds` client runs of `what` (bulk or ping) through `kind`."""
    with path(kind, port) as through:
        times: list[float] = []
        benchmark.pedantic(
            lambda: times.append(ask(client, what, through, n)), rounds=rounds, iterations=1, warmup_rounds=1
        )
    return sorted(times)[len(times) // 2]


@pytest.mark.benchmark(group="relay")
@pytest.mark.parametrize("kind", LOOPS)
def test_bulk_throughput(benchmark, servers: dict[str, int], client: subprocess.Popen, kind: str) -> None:
    best = _median_run(benchmark, client, kind, servers["sink"], "bulk", BULK, rounds=7)
    benchmark.extra_info["MB_per_s_median"] = round(BULK / MB / best, 1)
    benchmark.extra_info["bytes"] = BULK
    assert best > 0


@pytest.mark.benchmark(group="relay")
@pytest.mark.parametrize("kind", LOOPS)
def test_ping_pong_latency(benchmark, servers: dict[str, int], client: subprocess.Popen, kind: str) -> None:
    best = _median_run(benchmark, client, kind, servers["echo"], "ping", PINGS, rounds=5)
    benchmark.extra_info["rtt_us_median_run"] = round(best / PINGS * 1e6, 1)
    assert best > 0
