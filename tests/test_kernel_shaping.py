"""Kernel shaping probes, and the relay's bandwidth cross-checked against `tc tbf` in namespaces.

Skips (with the reason) where network namespaces or tbf are unavailable: no root, no
iproute2, or a kernel without the qdisc.
"""

from __future__ import annotations

import subprocess

import pytest

from harness.net import kernel_shaping as ks

# tbf counts whole frames (14 + 20 + 20 + 12 bytes of headers around 1448 of payload);
# the relay's bandwidth is TCP payload, so tbf's payload rate is this fraction of the line rate.
GOODPUT = 1448 / 1514

NETNS = ks.probe_netns()
TBF = ks.tbf_available() if NETNS.available else NETNS
needs_tbf = pytest.mark.skipif(
    not (NETNS.available and TBF.available), reason=f"no tbf cross-check here: {NETNS.detail}; {TBF.detail}"
)


def _namespaces() -> set[str]:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return {line.split()[0] for line in r.stdout.splitlines() if line.strip()}


@pytest.mark.skipif(not NETNS.available, reason=f"no network namespaces: {NETNS.detail}")
def test_probes_report_and_clean_up() -> None:
    before = _namespaces()
    netem = ks.netem_available()
    tbf = ks.tbf_available()
    assert netem.detail and tbf.detail
    print(f"netem: {netem}; tbf: {tbf}")
    assert _namespaces() == before


@needs_tbf
def test_relay_bandwidth_matches_tbf() -> None:
    before = _namespaces()
    checks = ks.cross_check((10, 100), seconds=2.0)
    assert _namespaces() == before
    for c in checks:
        print(c)
        # Ours: the relay delivers the configured payload rate.
        assert c.relay_mbit == pytest.approx(c.rate_mbit, rel=0.05)
        # The reference: tbf is only sanity-checked, since its own figure varies from run
        # to run on this machine (8.3 to 9.6 Mbit/s of payload at 10 Mbit/s seen here).
        assert c.tbf_mbit == pytest.approx(c.rate_mbit * GOODPUT, rel=0.25)
