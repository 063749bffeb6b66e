"""The researcher's part of a private query (`circuits.secret`): its constants, secret-shared.

The researcher party alone reads the constants file the cell wrote (`job.write_constants`); every other
party inputs zeros of the template's public length, so the messages of two
queries of one shape are the same in number and size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from mpyc.runtime import mpc

from backends.mpyc.job import Job


def input_constants(job: Job, secint: Any) -> Any:
    """The secret constants as one secure array, input by the researcher (None: the
    criteria are public)."""
    if job.researcher is None:
        return None
    values = [0] * job.constants
    if mpc.pid == job.researcher:
        values = json.loads(Path(job.constants_path).read_text())
    return mpc.input(secint.array(np.array(values, dtype=np.int64)), senders=job.researcher)
