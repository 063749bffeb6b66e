"""Network isolation of a run: its parties and relay in a fresh network namespace.

MP-SPDZ's VMs listen on every interface of their host (they have no option to bind
one address; MPyC's parties are bound to their own address by `backends.mpyc.party`).
So that no party of a benchmark is ever reachable from outside, each run can take
place in a network namespace made for it alone:
`call` starts a thread, moves that thread (not the harness) into a new namespace
with `unshare(CLONE_NEWNET)`, brings the namespace's loopback interface up, and
runs the run there.  Everything the run starts inherits the namespace: the
relay's sockets and thread, the party processes and their listening ports.  The
namespace holds nothing but `lo`, so "all interfaces" means its own 127.0.0.1;
it disappears with the run's last process.

Making a namespace needs CAP_SYS_ADMIN (root).  Mode ``auto`` (the default of
the `isolation` key) isolates where it can and otherwise runs on the host's
loopback, saying so once; ``netns`` insists; ``none`` never isolates.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

MODES = ("auto", "netns", "none")
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS = 0x8913, 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH14s"  # struct ifreq: name, flags, padding


def _enter_new_namespace() -> None:
    """Move the calling thread into a new network namespace with `lo` up; OSError if not allowed."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0, b"")))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP, b""))


def call(fn: Callable[[], T]) -> T:
    """fn() run in a thread of its own inside a fresh network namespace; its result or
    its exception.  OSError when this process may not create a namespace."""
    box: dict[str, object] = {}

    def body() -> None:
        try:
            _enter_new_namespace()
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    # A daemon thread: if the harness is interrupted while waiting, it exits, and the
    # parties (whose parent-death signal is tied to this thread) die with it.
    t = threading.Thread(target=body, name="netns-run", daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.1)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def namespace_of_current_thread() -> str:
    """e.g. 'net:[4026532177]': which network namespace the calling thread is in."""
    return os.readlink("/proc/thread-self/ns/net")


def probe() -> str | None:
    """None when runs can be isolated here, else why not."""
    try:
        host = namespace_of_current_thread()
        inside = call(namespace_of_current_thread)
    except OSError as e:
        return f"cannot create a network namespace ({e.strerror or e}); it needs root (CAP_SYS_ADMIN)"
    return None if inside != host else "the new network namespace is the host's"


def resolve(mode: str) -> tuple[bool, str | None]:
    """Whether to isolate runs under `mode`, and a warning to show (auto without the
    means).  ValueError when mode is `netns` and it cannot be had."""
    if mode not in MODES:
        raise ValueError(f"isolation {mode!r} is unknown; use one of {', '.join(MODES)}")
    if mode == "none":
        return False, None
    why = probe()
    if why is None:
        return True, None
    if mode == "netns":
        raise ValueError(f"isolation: netns: {why}")
    return False, (
        f"isolation: parties run in the host's network namespace ({why}); they "
        "connect over 127.0.0.1 but MP-SPDZ's VMs listen on every interface"
    )
