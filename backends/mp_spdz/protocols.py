"""The MP-SPDZ protocols cohortbench runs, and where MP-SPDZ lives.

Each `Protocol` records the facts the rest of the backend needs: the virtual
machine binary, the security model (semi-honest or malicious, honest or
dishonest majority), the computation domain (a prime field or the ring
Z_2^64), the party counts the VM accepts, whether it takes `-N`, whether its
links are TLS-encrypted by default, and how to ask the compiler to optimise for it
(`-E <name>`, which also picks the domain's protocol-specific options).  It
assumes the MP-SPDZ commit named in backends/mp_spdz/README.md, whose VM
behaviours (TLS defaults, fixed party counts) the README lists.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from backends.engine import DISHONEST, HONEST, MALICIOUS, MAX_PARTIES, SEMI_HONEST

DEFAULT_HOME = Path("/opt/mp-spdz")
HOME_ENV = "MP_SPDZ_HOME"
# The honest-majority VMs refuse -u unless MP-SPDZ was compiled with -DINSECURE (for
# benchmarks of the protocol without its channel, e.g. tampering that TLS would stop):
# a second build of the same commit, used only for cells with `ssl: false`.
DEFAULT_PLAINTEXT_HOME = Path("/opt/mp-spdz-insecure")
PLAINTEXT_HOME_ENV = "MP_SPDZ_INSECURE_HOME"
INSTALL_DOCS = "https://mp-spdz.readthedocs.io/en/latest/readme.html#tl-dr-source-distribution"

FIELD, RING = "field", "ring"
RING_BITS = 64  # -R 64: the ring Z_2^64 for every ring protocol


@dataclass(frozen=True)
class Protocol:
    """One MP-SPDZ protocol as cohortbench uses it."""

    name: str  # registry key (the VM name without -party.x)
    vm: str  # binary in MP_SPDZ_HOME
    security: str  # semi-honest | malicious
    majority: str  # honest | dishonest (of the parties)
    domain: str  # field (mod a prime) | ring (mod 2^64)
    min_parties: int
    max_parties: int
    takes_N: bool  # the VM accepts -N <parties>
    tls: bool  # the VM encrypts its links by default (certificates needed; -u turns it off)
    compiler_protocol: str  # the compiler's -E name

    @property
    def compile_flags(self) -> tuple[str, ...]:
        """The domain and protocol flags for MP-SPDZ's compile.py (the field bit length
        is added per program, see `compile.field_bits`)."""
        domain = ("-R", str(RING_BITS)) if self.domain == RING else ()
        return ("-E", self.compiler_protocol, *domain)

    def allows(self, parties: int) -> bool:
        return self.min_parties <= parties <= self.max_parties

    def check_parties(self, parties: int) -> None:
        if not self.allows(parties):
            span = (
                str(self.min_parties)
                if self.min_parties == self.max_parties
                else f"{self.min_parties} to {self.max_parties}"
            )
            raise ValueError(f"MP-SPDZ {self.name} runs with {span} parties, not {parties}")

    @property
    def default_parties(self) -> int:
        return self.min_parties

    def vm_path(self, home: Path | None = None) -> Path:
        return mp_spdz_home(home) / self.vm

    def needs_plaintext_build(self, tls: bool | None) -> bool:
        """Plaintext links asked of a VM that encrypts by default: only an -DINSECURE build runs it."""
        return tls is False and self.tls


_MAX = MAX_PARTIES

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("semi", "semi-party.x", SEMI_HONEST, DISHONEST, FIELD, 2, _MAX, True, False, "semi"),
        Protocol("mascot", "mascot-party.x", MALICIOUS, DISHONEST, FIELD, 2, _MAX, True, False, "mascot"),
        Protocol("shamir", "shamir-party.x", SEMI_HONEST, HONEST, FIELD, 3, _MAX, True, True, "shamir"),
        Protocol(
            "malicious-shamir",
            "malicious-shamir-party.x",
            MALICIOUS,
            HONEST,
            FIELD,
            3,
            _MAX,
            True,
            True,
            "mal-shamir",
        ),
        Protocol(
            "replicated-ring", "replicated-ring-party.x", SEMI_HONEST, HONEST, RING, 3, 3, False, True, "ring"
        ),
        Protocol(
            "ps-rep-ring", "ps-rep-ring-party.x", MALICIOUS, HONEST, RING, 3, 3, False, True, "ps-rep-ring"
        ),
        Protocol("semi2k", "semi2k-party.x", SEMI_HONEST, DISHONEST, RING, 2, _MAX, True, False, "semi2k"),
        Protocol("spdz2k", "spdz2k-party.x", MALICIOUS, DISHONEST, RING, 2, _MAX, True, False, "spdz2k"),
    )
}


def get(name: str) -> Protocol:
    """The protocol called `name`; ValueError listing the known ones otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown MP-SPDZ protocol {name!r}; use one of " + ", ".join(PROTOCOLS)) from None


def mp_spdz_home(home: Path | str | None = None) -> Path:
    """MP-SPDZ's directory: `home`, else $MP_SPDZ_HOME, else /opt/mp-spdz."""
    if home is not None:
        return Path(home)
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME)


def plaintext_home() -> Path:
    """The -DINSECURE build's directory: $MP_SPDZ_INSECURE_HOME, else /opt/mp-spdz-insecure."""
    return Path(os.environ.get(PLAINTEXT_HOME_ENV) or DEFAULT_PLAINTEXT_HOME)


def compiler_script(home: Path | None = None) -> Path:
    return mp_spdz_home(home) / "compile.py"


def commit(home: Path | None = None) -> str | None:
    """MP-SPDZ's git commit, read from its .git directory (no git needed), or from a
    VERSION/version file; None when neither exists."""
    root = mp_spdz_home(home)
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        loose = git / ref
        if loose.exists():
            return loose.read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    for name in ("VERSION", "version", "version.txt"):
        path = root / name
        if path.is_file():
            return path.read_text().strip() or None
    return None


def describe(home: Path | None = None) -> str | None:
    """`git describe` of MP-SPDZ (e.g. v0.4.2-16-g3a0a7b1d) when git can tell, else None."""
    root = mp_spdz_home(home)
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--tags", "--always"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def compiler_version(home: Path | None = None) -> str:
    """Identifies the compiler for caching: the commit plus a hash of compile.py and the
    Compiler package's sources (so a locally edited compiler is not confused with the commit)."""
    root = mp_spdz_home(home)
    h = hashlib.sha256()
    files = [root / "compile.py", *sorted((root / "Compiler").rglob("*.py"))]
    for path in files:
        try:
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
        except OSError:
            continue
    return f"{commit(root) or 'unknown'}+{h.hexdigest()[:12]}"
