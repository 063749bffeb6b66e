"""Realistic records built for the table and report tests (no engine runs).

`record` writes the fields a sweep writes that the tables read; `security_models`
is a results file like configs/security-models.yaml's (MPyC and every MP-SPDZ
protocol on lan and wan), `latency` like configs/latency.yaml's, `synthea` like
configs/synthea.yaml's (the 60-patient FHIR directory).
"""

from __future__ import annotations

from harness.analysis.records import Record

NETWORKS = {
    "loopback": (0.0, None),
    "relay": (0.0, None),
    "lan": (0.1, 10_000.0),
    "metro": (5.0, 1_000.0),
    "wan": (25.0, 100.0),
    "intercontinental": (75.0, 50.0),
}
# protocol -> engine, security, majority, parties, time at 1,000 patients on lan (s), bytes
PROTOCOLS = {
    "shamir": ("mpyc", "semi-honest", "honest", 3, 2.0, 4.0e6),
    "replicated-ring": ("mp-spdz", "semi-honest", "honest", 3, 0.4, 2.0e6),
    "mp-spdz-shamir": ("mp-spdz", "semi-honest", "honest", 3, 0.6, 3.0e6),
    "ps-rep-ring": ("mp-spdz", "malicious", "honest", 3, 1.6, 9.0e6),
    "malicious-shamir": ("mp-spdz", "malicious", "honest", 3, 2.4, 1.2e7),
    "semi": ("mp-spdz", "semi-honest", "dishonest", 2, 3.0, 6.0e7),
    "semi2k": ("mp-spdz", "semi-honest", "dishonest", 2, 1.5, 4.0e7),
    "spdz2k": ("mp-spdz", "malicious", "dishonest", 2, 30.0, 9.0e8),
    "mascot": ("mp-spdz", "malicious", "dishonest", 2, 60.0, 2.0e9),
}


def record(
    config: str,
    protocol: str,
    network: str,
    repeat: int,
    engine_s: float,
    *,
    source: str = "synthetic:1000",
    population: int = 1000,
    bytes_sent: float = 1.0e6,
    engine: str = "mpyc",
    security: tuple[str, str] = ("semi-honest", "honest"),
    parties: int = 3,
    load: float = 0.5,
    cores: int = 8,
    tls: bool | None = None,
    meta: dict | None = None,
) -> Record:
    delay, bandwidth = NETWORKS[network]
    name = protocol.removeprefix("mp-spdz-")
    return Record.from_json(
        {
            "config": config,
            "cell": f"{engine}-{name}-{parties}-{source}-{network}-{tls}",
            "engine": engine,
            "protocol": name,
            "security": security[0],
            "majority": security[1],
            "parties": parties,
            "population": population,
            "population_source": source,
            "padding": {"conditions": 8, "exams": 16},
            "query": {"name": "five-criteria", "ir_hash": "d8a6", "output": "eligible"},
            "network": {
                "name": network,
                "relayed": network != "loopback",
                "delay_ms": delay,
                "jitter_ms": 0.0,
                "bandwidth_mbit": bandwidth,
            },
            "repeat": repeat,
            "warmup": False,
            "wall_s": engine_s + 0.8,
            "engine_s": [engine_s * 0.97] * (parties - 1) + [engine_s],
            "bytes_sent": bytes_sent,
            "bytes_by_party": [int(bytes_sent / parties)] * parties,
            "rounds": 40.0 if network != "loopback" else None,
            "engine_rounds": 35 if engine == "mp-spdz" else None,
            "tls": tls,
            "cohort_size": 12,
            "correct": True,
            "error": None,
            "load_avg": [load, load, load],
            "time": f"2026-12-02T12:{repeat:02d}:00+00:00",
            "meta": {"commit": "abc123", "cores": cores, "cpu": "Test CPU", "config_hash": config}
            | (meta or {}),
        }
    )


def security_models(repeats: int = 3) -> list[Record]:
    """Every protocol on lan and wan at 1,000 patients; wan slows each by its rounds."""
    out = []
    for protocol, (engine, sec, maj, parties, t, b) in PROTOCOLS.items():
        for network in ("lan", "wan"):
            slow = 1.0 if network == "lan" else 2.5
            out += [
                record(
                    "security-models",
                    protocol,
                    network,
                    i,
                    t * slow * (1 + i / 100),
                    bytes_sent=b,
                    engine=engine,
                    security=(sec, maj),
                    parties=parties,
                    tls=engine == "mp-spdz" and maj == "honest",
                )
                for i in range(repeats)
            ]
    return out


def latency(repeats: int = 3) -> list[Record]:
    """MPyC shamir at two populations and paper-loop at one, on every network profile."""
    out = []
    for protocol, populations, k in (("shamir", (100, 1000), 1.0), ("paper-loop", (100,), 8.0)):
        for n in populations:
            for network, (delay, _) in NETWORKS.items():
                out += [
                    record(
                        "latency",
                        protocol,
                        network,
                        i,
                        k * (n / 500 + delay * 0.04) * (1 + i / 100),
                        source=f"synthetic:{n}",
                        population=n,
                        bytes_sent=k * 4000 * n,
                    )
                    for i in range(repeats)
                ]
    return out


def synthea() -> list[Record]:
    """One run each of MPyC at 3, 5 and 7 parties and of the MP-SPDZ protocols, loopback."""
    source = "../../shared/data/synthea-r4"
    out = [
        record("synthea", p, "loopback", 0, 0.5 * m, source=source, population=60, parties=m)
        for p in ("shamir", "paper-loop")
        for m in (3, 5, 7)
    ]
    for protocol, (engine, sec, maj, parties, t, b) in PROTOCOLS.items():
        if engine == "mp-spdz":
            out.append(
                record(
                    "synthea",
                    protocol,
                    "loopback",
                    0,
                    t / 10,
                    source=source,
                    population=60,
                    bytes_sent=b / 10,
                    engine=engine,
                    security=(sec, maj),
                    parties=parties,
                )
            )
    return out
