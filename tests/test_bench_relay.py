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

MB = 1 << 20
BULK = 64 * MB
PINGS = 2000

# Reads to EOF, then answers "done\n" (sink); or echoes (echo).
SERVER = r"""
import socket, sys, threading
mode = sys.argv[1]
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)
def handle(c):
    with c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(1 << 20)
        while True:
            n = c.recv_into(buf)
            if not n:
                break
            if mode == "echo":
                c.sendall(memoryview(buf)[:n])
        if mode == "sink":
            c.sendall(b"done\n")
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"""

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
        assert s.recv(16) == b"done\n"
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
    p = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
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


@pytest.mark.benchmark(group="relay")
@pytest.mark.parametrize("kind", LOOPS)
def test_bulk_throughput(benchmark, servers: dict[str, int], client: subprocess.Popen,
                         kind: str) -> None:
    with path(kind, servers["sink"]) as port:
        times: list[float] = []
        benchmark.pedantic(lambda: times.append(ask(client, "bulk", port, BULK)),
                           rounds=7, iterations=1, warmup_rounds=1)
    best = sorted(times)[len(times) // 2]
    benchmark.extra_info["MB_per_s_median"] = round(BULK / MB / best, 1)
    benchmark.extra_info["bytes"] = BULK
    assert best > 0


@pytest.mark.benchmark(group="relay")
@pytest.mark.parametrize("kind", LOOPS)
def test_ping_pong_latency(benchmark, servers: dict[str, int], client: subprocess.Popen,
                           kind: str) -> None:
    with path(kind, servers["echo"]) as port:
        times: list[float] = []
        benchmark.pedantic(lambda: times.append(ask(client, "ping", port, PINGS)),
                           rounds=5, iterations=1, warmup_rounds=1)
    best = sorted(times)[len(times) // 2]
    benchmark.extra_info["rtt_us_median_run"] = round(best / PINGS * 1e6, 1)
    assert best > 0
