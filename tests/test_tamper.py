"""Faults in the relay (harness/net/faults.py, harness/net/relay.py) and tamper experiments.

Relay level: an in-process server behind the relay, a client in the test; every socket
has a timeout, so no test can hang.  Integration: small populations (<= 30 patients)
through `run_sweep` or the CLI, each with a short `timeout_s`; MP-SPDZ tests skip when
it is absent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from circuits.errors import InputError
from test_relay import connect, recv_exact
from harness.run.config import load_experiment
from harness.net.faults import Fault, FaultState, parse_fault
from harness.net.networks import PROFILES, parse_network
from harness.net.relay import LinkShape, Relay
from harness.run.sweep import run_sweep
from harness.analysis.tamper import outcome, rows, table
from backends.mp_spdz.engine import ABORTS as PROTOCOL_ABORTS, TLS_ERRORS
from harness.run.diagnosis import diagnose, first_error_line
from mp_spdz_vms import need_vm
from conftest import cli_run

REPO = Path(__file__).resolve().parent.parent
QUERY = REPO / "configs" / "queries" / "five-criteria.yaml"
IO_TIMEOUT_S = 20


class Server:
    """A loopback server in a thread: records every read (time, bytes) and whether the
    peer closed; with `echo`, sends back what it reads."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(IO_TIMEOUT_S)
        self.port = self.sock.getsockname()[1]
        self.reads: list[list[tuple[float, bytes]]] = []  # per connection
        self.closed: list[threading.Event] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            reads: list[tuple[float, bytes]] = []
            done = threading.Event()
            self.reads.append(reads)
            self.closed.append(done)
            threading.Thread(target=self._serve, args=(c, reads, done), daemon=True).start()

    def _serve(self, c: socket.socket, reads: list, done: threading.Event) -> None:
        c.settimeout(IO_TIMEOUT_S)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            with c:
                while True:
                    d = c.recv(1 << 16)
                    if not d:
                        return
                    reads.append((time.monotonic(), d))
                    if self.echo:
                        c.sendall(d)
        except OSError:
            pass
        finally:
            done.set()

    def wait_closed(self, conn: int, timeout_s: float = IO_TIMEOUT_S) -> bool:
        """Wait until connection `conn` (0-based, in accept order) has ended."""
        deadline = time.monotonic() + timeout_s
        while len(self.closed) <= conn:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return self.closed[conn].wait(max(0.0, deadline - time.monotonic()))

    def received(self, conn: int = 0) -> bytes:
        return b"".join(d for _, d in self.reads[conn])

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo():
    s = Server(echo=True)
    yield s
    s.close()


@pytest.fixture
def recorder():
    s = Server(echo=False)
    yield s
    s.close()


def echo_bulk(relay: Relay, payload: bytes) -> bytes:
    """Send everything, half-close, read the echo to EOF (sending and reading at once)."""
    with connect(relay.port_for(0, 1)) as s:
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        sender.start()
        buf = bytearray()
        while True:
            d = s.recv(1 << 16)
            if not d:
                break
            buf += d
        sender.join(IO_TIMEOUT_S)
    return bytes(buf)


def ping_pong(relay: Relay, messages: list[bytes]) -> list[bytes]:
    """One message at a time, each answered before the next: one chunk per message."""
    with connect(relay.port_for(0, 1)) as s:
        return [(s.sendall(m), recv_exact(s, len(m)))[1] for m in messages]


def differing_bits(a: bytes, b: bytes) -> list[tuple[int, int]]:
    assert len(a) == len(b)
    return [(i, x ^ y) for i, (x, y) in enumerate(zip(a, b)) if x != y]


# --- the relay -------------------------------------------------------------------------------


def test_no_fault_bytes_identical(echo):
    payload = os.urandom(300_000)
    with Relay([(0, 1, echo.port)]) as relay:
        assert echo_bulk(relay, payload) == payload
        assert relay.stats().faults_fired == {}
    # A fault on the other direction leaves this one untouched (and is not fired by it).
    with Relay([(0, 1, echo.port)], faults={(1, 0): Fault("flip", offset=10**9)}) as relay:
        assert echo_bulk(relay, payload) == payload
        event = relay.stats().faults_fired[(1, 0)]
    assert event["fired"] is False and event["stream_bytes"] == len(payload)


@pytest.mark.parametrize("link", [(0, 1), (1, 0)])
def test_flip_at_offset_changes_exactly_that_bit(echo, link):
    payload = os.urandom(200_000)
    with Relay([(0, 1, echo.port)], faults={link: Fault("flip", offset=123_456, bit=5)}) as relay:
        got = echo_bulk(relay, payload)
        event = relay.stats().faults_fired[link]
    assert differing_bits(payload, got) == [(123_456, 1 << 5)]
    assert event["fired"] and event["offset"] == 123_456 and event["bytes"] == 1
    assert event["time_s"] is not None and event["time_s"] >= 0


def test_flip_in_the_kth_chunk(echo):
    messages = [bytes([i]) * 100 for i in range(8)]
    with Relay([(0, 1, echo.port)], faults={(0, 1): Fault("flip", chunk=3, offset=7)}) as relay:
        got = ping_pong(relay, messages)
        event = relay.stats().faults_fired[(0, 1)]
    assert [i for i, (m, g) in enumerate(zip(messages, got)) if m != g] == [3]
    assert differing_bits(messages[3], got[3]) == [(7, 1)]
    assert (event["chunk"], event["offset"]) == (3, 307)


def test_replace_across_chunks(echo):
    messages = [bytes([0x11 * (i + 1)]) * 100 for i in range(4)]
    fault = parse_fault({"mode": "replace", "offset": 195, "data": "deadbeefcafe"})
    with Relay([(0, 1, echo.port)], faults={(0, 1): fault}) as relay:
        got = b"".join(ping_pong(relay, messages))
        event = relay.stats().faults_fired[(0, 1)]
    want = bytearray(b"".join(messages))
    want[195:201] = bytes.fromhex("deadbeefcafe")
    assert got == bytes(want)
    assert event["fired"] and event["offset"] == 195 and event["bytes"] == 6 and event["chunk"] == 1


def test_drop_closes_after_k_bytes(recorder):
    with Relay([(0, 1, recorder.port)], faults={(0, 1): Fault("drop", offset=1000)}) as relay:
        with connect(relay.port_for(0, 1)) as s:
            try:
                s.sendall(os.urandom(5000))
                assert s.recv(100) == b""  # closed by the relay: EOF ...
            except (ConnectionResetError, BrokenPipeError):
                pass  # ... or a reset, if it closed with our bytes unread
        assert recorder.wait_closed(0)  # the server saw the connection end
        assert len(recorder.received(0)) == 1000
        # The fault fired once: a second connection on the same link goes through whole.
        data = os.urandom(3000)
        with connect(relay.port_for(0, 1)) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            assert recorder.wait_closed(1)
        assert recorder.received(1) == data
        event = relay.stats().faults_fired[(0, 1)]
    assert event["fired"] and event["offset"] == 1000 and event["bytes"] == 1000


def test_drop_on_a_shaped_link_at_the_first_byte(recorder):
    shape = LinkShape(delay_ms=1, bandwidth_mbit=50)
    with Relay([(0, 1, recorder.port)], shape, faults={(0, 1): Fault("drop", chunk=0)}) as relay:
        with connect(relay.port_for(0, 1)) as s:
            try:
                s.sendall(b"x" * 100)
                assert s.recv(100) == b""
            except (ConnectionResetError, BrokenPipeError):
                pass
        assert recorder.wait_closed(0)
    assert recorder.received(0) == b""


def test_delay_holds_one_chunk_and_keeps_order(recorder):
    hold = 0.6
    messages = [bytes([i]) * 100 for i in range(3)]
    with Relay([(0, 1, recorder.port)], faults={(0, 1): Fault("delay", offset=100, seconds=hold)}) as relay:
        with connect(relay.port_for(0, 1)) as s:
            sent = []
            for m in messages:
                sent.append(time.monotonic())
                s.sendall(m)
                time.sleep(0.1)
            s.shutdown(socket.SHUT_WR)
            assert recorder.wait_closed(0)
        event = relay.stats().faults_fired[(0, 1)]
    assert recorder.received(0) == b"".join(messages)  # every byte, in order

    def arrival(byte: int) -> float:
        seen = 0
        for t, d in recorder.reads[0]:
            seen += len(d)
            if seen > byte:
                return t
        raise AssertionError(byte)

    assert arrival(0) - sent[0] < hold / 2  # the first chunk was not held
    assert arrival(100) - sent[1] >= hold - 0.01  # the second was, for `hold`
    assert arrival(200) >= arrival(100)  # the third waited behind it
    assert event["fired"] and event["offset"] == 100 and event["bytes"] == 100


def test_flip_on_a_shaped_link(echo):
    payload = os.urandom(150_000)
    shape = LinkShape(delay_ms=2, bandwidth_mbit=200)
    with Relay([(0, 1, echo.port)], shape, faults={(1, 0): Fault("flip", offset=77_777, bit=7)}) as relay:
        got = echo_bulk(relay, payload)
    assert differing_bits(payload, got) == [(77_777, 0x80)]


def test_fault_state_is_pure_bookkeeping():
    st = FaultState(Fault("flip", chunk=2, offset=150))  # 150 bytes after chunk 2 starts
    outs = [st.apply(bytes(100), float(i))[0] for i in range(5)]
    assert [i for i, o in enumerate(outs) if any(o)] == [3]  # chunk 2 starts at 200: byte 350
    assert outs[3][50] == 1 and st.event()["offset"] == 350 and st.event()["time_s"] == 3.0
    with pytest.raises(ValueError, match="no route carries"):
        Relay([(0, 1, 5000)], faults={(0, 2): Fault("flip", offset=1)})


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "faults,says",
    [
        ({"1->0": {"mode": "flop", "offset": 1}}, "unknown; use one of flip, replace, drop, delay"),
        ({"1->0": {"mode": "flip"}}, "needs offset"),
        ({"1->0": {"mode": "flip", "offset": -3}}, "whole number >= 0"),
        ({"1->0": {"mode": "flip", "offset": 1, "bit": 9}}, "bit must be 0 to 7"),
        ({"1->0": {"mode": "flip", "offset": 1, "seconds": 1}}, "seconds applies to delay"),
        ({"1->0": {"mode": "replace", "offset": 1}}, "needs data"),
        ({"1->0": {"mode": "replace", "offset": 1, "data": "xyz"}}, "hex bytes"),
        ({"1->0": {"mode": "delay", "chunk": 1}}, "needs seconds"),
        ({"1->0": {"mode": "drop", "offset": 1, "when": 2}}, "unknown fault key"),
        ({"1->1": {"mode": "drop", "offset": 1}}, "names one party twice"),
        ({"0-1": {"mode": "drop", "offset": 1}, "1->0": {"mode": "flip", "offset": 1}}, "twice"),
        ({"one->two": {"mode": "drop", "offset": 1}}, "must look like '1->0'"),
        ({"1->0": {"mode": "flip", "fraction": 1.0}}, "from 0 to below 1"),
        ({"1->0": {"mode": "flip", "fraction": 0.5, "offset": 3}}, "fraction: alone"),
        ({"1->0": {"mode": "flip", "fraction": 0.5, "chunk": 3}}, "fraction: alone"),
        ({"1->0": {"mode": "flip", "fraction": "late"}}, "from 0 to below 1"),
    ],
)
def test_fault_spec_errors(faults, says):
    with pytest.raises(ValueError, match=says):
        parse_network({"profile": "relay", "faults": faults}, PROFILES)


def test_network_with_faults_is_relayed_and_recorded():
    net = parse_network(
        {"profile": "lan", "faults": {"0-2": {"mode": "delay", "chunk": 4, "seconds": 0.5}}}, PROFILES
    )
    assert net.relayed and net.fault_parties == 3
    assert set(net.fault_map()) == {(0, 2), (2, 0)}
    assert net.record()["faults"] == {
        "0->2": {"mode": "delay", "chunk": 4, "seconds": 0.5},
        "2->0": {"mode": "delay", "chunk": 4, "seconds": 0.5},
    }
    assert net.name == "lan+delay@chunk4(0-2)"
    plain = parse_network({"profile": "relay"}, PROFILES)
    assert "faults" not in plain.record() and plain.fault_map() == {}


def test_fault_at_a_fraction_is_placed_by_a_clean_run():
    net = parse_network({"profile": "wan", "faults": {"1->0": {"mode": "flip", "fraction": 0.95}}}, PROFILES)
    assert net.needs_calibration and net.name == "wan+flip@0.95(1->0)"
    clean = net.without_faults()
    assert clean.relayed and not clean.faults and clean.default == net.default
    with pytest.raises(ValueError, match="resolve it to an offset first"):
        Relay([(1, 0, 5000)], faults=net.fault_map())
    placed = net.calibrated([[0, 10], [2001, 0]])  # the clean run sent 2001 bytes on 1->0
    assert not placed.needs_calibration
    assert placed.fault_map()[(1, 0)].offset == 1900  # floor(0.95 * 2001)
    assert placed.faults[0][1].record() == {"mode": "flip", "fraction": 0.95, "offset": 1900, "bit": 0}
    assert placed.faults[0][1].label == "flip@0.95=1900"


def test_config_rejects_a_fault_on_a_missing_party(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
name: t
query: {QUERY}
populations: [synthetic:5]
engines: [{{engine: mpyc, protocol: shamir, parties: 3}}]
networks: [{{profile: relay, faults: {{"3->0": {{mode: flip, offset: 10}}}}}}]
""")
    with pytest.raises(
        InputError,
        match=r"networks\[0\]: its faults name party 3, but "
        r"engines\[0\] \(mpyc/shamir/3p\) has 3 parties",
    ):
        load_experiment(cfg)


# --- diagnosis -------------------------------------------------------------------------------


def test_first_error_line_and_diagnosis(tmp_path):
    mpyc = (
        "2026-01-01 10:00:00,000 Start MPyC runtime v0.11\n"
        "2026-01-01 10:00:00,404 Unhandled exception in event loop\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "_pickle.UnpicklingError: pickle data was truncated\n"
    )
    assert first_error_line(mpyc) == "_pickle.UnpicklingError: pickle data was truncated"
    cpp = (
        "Setup took 0.03 seconds.\nterminate called after throwing an instance of 'mac_fail'\n"
        "  what():  MacCheck Failure\n"
    )
    assert first_error_line(cpp) == (
        "terminate called after throwing an instance of 'mac_fail': MacCheck Failure"
    )
    logs = []
    for i, text in enumerate(
        [
            "Fatal error: Connection closed down. This is most likely due to a problem on the other side.\n",
            "Fatal error in OT thread: PPRF failed consistency check.\n",
        ]
    ):
        logs.append(tmp_path / f"party-{i}.log")
        logs[-1].write_text(text)
    d = diagnose(logs, [1, 1], False, (0, 1), PROTOCOL_ABORTS, TLS_ERRORS)
    assert (d.failing_party, d.detected_by) == (1, "protocol")
    assert d.message == "Fatal error in OT thread: PPRF failed consistency check."
    logs[1].write_text(
        "Fatal error in communication: read_some: cipher operation failed "
        "(Provider routines) [asio.ssl:478150758]\n"
    )
    assert diagnose(logs, [-9, 1], False, (1,), PROTOCOL_ABORTS, TLS_ERRORS).detected_by == "tls"
    logs[1].write_text("Fatal error in communication: read_some: stream truncated [asio.ssl.stream:1]\n")
    assert diagnose(logs, [1, 1], False, (0,), PROTOCOL_ABORTS, TLS_ERRORS).detected_by == "none"


def test_outcome_classes():
    base = {"fault": {"1->0": {"mode": "flip", "offset": 1}}, "fault_fired": True}
    assert outcome({**base, "error": None, "result_correct": True}) == "correct"
    assert outcome({**base, "error": "MISMATCH", "result_correct": False}) == "wrong"
    assert outcome({**base, "error": "x", "result_correct": None, "tamper_detected_by": "tls"}) == "tls"
    assert outcome({**base, "error": "x", "result_correct": None, "tamper_detected_by": "none"}) == "failed"
    record = {
        **base,
        "config": "c",
        "engine": "mp-spdz",
        "protocol": "spdz2k",
        "parties": 2,
        "security": "malicious",
        "majority": "dishonest",
        "warmup": False,
    }
    runs = [
        {
            **record,
            "error": "x",
            "tamper_detected_by": "protocol",
            "failing_party_message": "Fatal error in OT thread: PPRF failed consistency check.",
        },
        {**record, "error": None, "result_correct": True},
        {**record, "error": "x", "fault_fired": False},
    ]
    t = table(runs)
    assert t is not None and t.row_count == 1
    [row] = rows(runs)
    assert row.counts["protocol"] == 1 and row.counts["correct"] == 1 and row.not_fired == 1
    assert row.by_fault == "1->0 flip@1: PC-"
    assert row.message == "Fatal error in OT thread: PPRF failed consistency check."
    assert table([{**record, "fault": None, "error": None}]) is None


# --- integration -----------------------------------------------------------------------------


def config(
    tmp_path: Path, engines: str, networks: str, population: str = "synthetic:20", timeout_s: int = 60
) -> Path:
    cfg = tmp_path / "tamper.yaml"
    cfg.write_text(f"""
name: tamper-test
query: {QUERY}
populations: [{population}]
padding: {{conditions: 4, exams: 6}}
truncate: true
engines:
{engines}
networks: {networks}
repeats: 1
warmup: 0
timeout_s: {timeout_s}
""")
    return cfg


FIELDS = (
    "fault",
    "fault_fired",
    "tamper_detected",
    "tamper_detected_by",
    "result_correct",
    "failing_party_message",
)


def test_mpyc_flip_completes_or_fails_without_hanging(tmp_path):
    cfg = config(
        tmp_path,
        "  - {engine: mpyc, protocol: shamir}",
        '[{profile: relay, faults: {"1->0": {mode: flip, offset: 3000}}}]',
    )
    t0 = time.monotonic()
    [r] = run_sweep(load_experiment(cfg), tmp_path / "r.jsonl", False, lambda m: None)
    assert time.monotonic() - t0 < 60  # well within the timeout: no hang
    assert all(k in r for k in FIELDS)
    assert r["fault"] == {"1->0": {"mode": "flip", "offset": 3000, "bit": 0}}
    assert r["fault_fired"] is True and r["fault_events"]["1->0"]["offset"] == 3000
    assert r["tamper_detected_by"] == "none" and r["tamper_detected"] is False  # nothing checks
    if r["error"] is None:
        assert r["result_correct"] is True
    elif r["error"].startswith("MISMATCH"):
        assert r["result_correct"] is False
    else:
        assert r["result_correct"] is None and r["failing_party_message"]


def test_cli_tamper_failures_do_not_fail_the_sweep(tmp_path):
    """A drop after 1000 bytes kills the run; `cohortbench run` records it, prints the
    tamper table and exits 0, since a tampered run that fails is an expected outcome."""
    cfg = config(
        tmp_path,
        "  - {engine: mpyc, protocol: shamir}",
        '[{profile: relay, faults: {"1->0": {mode: drop, offset: 1000}}}]',
        population="synthetic:10",
    )
    out = tmp_path / "r.jsonl"
    p = cli_run(cfg, out, timeout=120)
    [r] = [json.loads(line) for line in out.read_text().splitlines()]
    assert r["error"] is not None and r["fault_fired"] is True and r["result_correct"] is None
    assert r["failing_party_message"] and r["tamper_detected_by"] == "none"
    assert "tampering" in p.stdout and "failed otherwise" in p.stdout
    assert "tampered run(s) failed" in p.stderr
    report = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(out), "--out", str(tmp_path / "report")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>Tampering</h2>" in page and "mpyc/shamir 3p plain" in page


def test_fraction_faults_share_one_calibration_run(tmp_path):
    """Two networks that differ only in where their fault sits: one clean run measures
    link 1->0, both faults are placed in it, and the records say where."""
    cfg = config(
        tmp_path,
        "  - {engine: mpyc, protocol: shamir}",
        '[{profile: relay, faults: {"1->0": {mode: flip, fraction: 0.5}}}, '
        '{profile: relay, faults: {"1->0": {mode: delay, fraction: 0.9, seconds: 0.2}}}]',
        population="synthetic:10",
    )
    records = run_sweep(load_experiment(cfg), tmp_path / "r.jsonl", False, lambda m: None)
    assert len(records) == 2
    calibrations = [p.name for p in (tmp_path / "r.runs").glob("*/calibration-*")]
    assert calibrations == ["calibration-0"]
    streams = {r["fault_calibration"]["1->0"] for r in records}
    assert len(streams) == 1 and streams.pop() > 1000
    for r, fraction in zip(records, (0.5, 0.9)):
        length = r["fault_calibration"]["1->0"]
        assert r["fault"]["1->0"]["fraction"] == fraction and "offset" not in r["fault"]["1->0"]
        event = r["fault_events"]["1->0"]
        assert r["fault_fired"] and event["offset"] == int(fraction * length)
        assert event["fault"]["offset"] == event["offset"]
    assert records[1]["error"] is None and records[1]["result_correct"] is True  # a delay only


def test_unfaulted_records_have_null_tamper_fields(tmp_path):
    cfg = config(tmp_path, "  - {engine: mpyc, protocol: shamir}", "[relay]", population="synthetic:10")
    [r] = run_sweep(load_experiment(cfg), tmp_path / "r.jsonl", False, lambda m: None)
    assert r["error"] is None and r["result_correct"] is True
    assert [r[k] for k in FIELDS] == [None, None, None, None, True, None]


@pytest.mark.parametrize("protocol,message", [("malicious-shamir", "mac_fail"), ("ps-rep-ring", "mac_fail")])
def test_plaintext_links_show_the_protocols_own_check(tmp_path, protocol, message):
    """Without TLS (ssl: false, an -DINSECURE build), a bit flipped halfway through the
    stream reaches the protocol, whose MAC check aborts; the exception tracer names it
    even where MP-SPDZ's own message is lost.  A clean run on plaintext links is correct."""
    need_vm(protocol, plaintext=True)
    cfg = config(
        tmp_path,
        f"  - {{engine: mp-spdz, protocol: {protocol}, ssl: false}}",
        '[relay, {profile: relay, faults: {"1->0": {mode: flip, fraction: 0.5}}}]',
    )
    clean, tampered = run_sweep(load_experiment(cfg), tmp_path / "r.jsonl", False, lambda m: None)
    assert clean["error"] is None and clean["correct"] and clean["tls"] is False
    assert tampered["fault_fired"] is True and tampered["error"] is not None
    assert tampered["tamper_detected_by"] == "protocol", tampered["failing_party_message"]
    assert message in tampered["failing_party_message"]
    assert tampered["fault_calibration"]["1->0"] == clean["bytes_by_link"][1][0]


@pytest.mark.parametrize("protocol", ["malicious-shamir", "mascot"])
def test_traced_clean_runs_show_no_integrity_abort(tmp_path, protocol):
    """The exception tracer is on in tamper experiments; in a run whose fault never fires
    the VMs throw (and catch) exceptions of their own, none of them an integrity abort."""
    need_vm(protocol)
    cfg = config(
        tmp_path,
        f"  - {{engine: mp-spdz, protocol: {protocol}}}",
        '[{profile: relay, faults: {"1->0": {mode: flip, offset: 1000000000000}}}]',
    )
    [r] = run_sweep(load_experiment(cfg), tmp_path / "r.jsonl", False, lambda m: None)
    assert r["error"] is None and r["correct"] and r["fault_fired"] is False
    logs = [p.read_text(errors="replace") for p in Path(r["logs"]).glob("party-*.log")]
    assert any("cohortbench: C++ exception thrown: " in text for text in logs)  # traced
    assert not any(PROTOCOL_ABORTS.search(text) for text in logs)


@pytest.mark.parametrize(
    "protocol,offset,detected_by",
    [("malicious-shamir", 3300, "tls"), ("ps-rep-ring", 3300, "tls"), ("spdz2k", 30_000, "protocol")],
)
def test_mp_spdz_malicious_flip_aborts(tmp_path, protocol, offset, detected_by):
    """A flipped bit past the connection setup: the honest-majority VMs' TLS rejects the
    record (their links are always encrypted); at 30 kB spdz2k's OT extension is under
    way, and its consistency check catches it (see configs/tamper.yaml for other offsets)."""
    need_vm(protocol)
    cfg = config(
        tmp_path,
        f"  - {{engine: mp-spdz, protocol: {protocol}}}",
        f'[{{profile: relay, faults: {{"1->0": {{mode: flip, offset: {offset}}}}}}}]',
    )
    t0 = time.monotonic()
    [r] = run_sweep(load_experiment(cfg), tmp_path / "r.jsonl", False, lambda m: None)
    assert time.monotonic() - t0 < 60
    assert r["fault_fired"] is True and r["error"] is not None, r["error"]
    assert r["tamper_detected"] is True and r["tamper_detected_by"] == detected_by, r["failing_party_message"]
    assert r["result_correct"] is None and r["failing_party_message"]
