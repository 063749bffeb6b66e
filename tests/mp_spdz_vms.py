"""Skips for tests that need MP-SPDZ: its compiler, or one virtual machine, each with the reason."""

from __future__ import annotations

import pytest

from backends.mp_spdz import protocols


def need_compiler() -> None:
    """Skip unless MP-SPDZ's compile.py is at $MP_SPDZ_HOME (default /opt/mp-spdz)."""
    home = protocols.mp_spdz_home()
    if not protocols.compiler_script(home).is_file():
        pytest.skip(
            f"MP-SPDZ not found at {home} (no compile.py there): set MP_SPDZ_HOME to an "
            f"MP-SPDZ build ({protocols.INSTALL_DOCS}); `cohortbench doctor` lists what is "
            "missing"
        )


def need_vm(name: str, plaintext: bool = False) -> protocols.Protocol:
    """Skip unless protocol `name`'s VM is built (and, with `plaintext`, its -DINSECURE build)."""
    need_compiler()
    home = protocols.mp_spdz_home()
    p = protocols.get(name)
    if not p.vm_path(home).is_file():
        pytest.skip(f"{p.vm} is not built in {home} (cd {home} && make {p.vm})")
    insecure = p.vm_path(protocols.plaintext_home())
    if plaintext and not insecure.is_file():
        pytest.skip(
            f"no MP-SPDZ build with -DINSECURE at {insecure} "
            f"(${protocols.PLAINTEXT_HOME_ENV}), which plaintext links of honest-majority "
            "VMs need"
        )
    return p
