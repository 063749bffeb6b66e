"""TLS material for a cell's parties, made fresh (valid one day) with the openssl command.

MPyC's `--ssl` reads `.config/party_<i>.crt`, `.config/party_<i>.key` and
`.config/mpyc_ca.crt` from its working directory and checks each peer's
certificate against the name `MPyC party <i>`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from circuits.errors import InputError


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_mpyc_certs(directory: Path, parties: int) -> Path:
    """A CA and one certificate per party under directory/.config; returns directory."""
    if shutil.which("openssl") is None:
        raise InputError(
            "engines",
            "ssl",
            "TLS needs the openssl command",
            "install it (Debian: apt-get install openssl) or set ssl: false",
        )
    conf = directory / ".config"
    conf.mkdir(parents=True, exist_ok=True)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req",
        "-x509",
        *curve,
        "-keyout",
        "ca.key",
        "-out",
        "mpyc_ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=cohortbench test CA",
        cwd=conf,
    )
    for i in range(parties):
        _openssl(
            "req",
            *curve,
            "-keyout",
            f"party_{i}.key",
            "-out",
            f"party_{i}.csr",
            "-subj",
            f"/CN=MPyC party {i}",
            cwd=conf,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"party_{i}.csr",
            "-CA",
            "mpyc_ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"party_{i}.crt",
            "-days",
            "1",
            cwd=conf,
        )
    (conf / "ca.key").unlink()
    return directory
