"""The result record: version-1 files load, unknown keys are kept, newer versions refused,
and the README's record-fields table matches the dataclass."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re

import pytest

from circuits.errors import InputError
from harness.analysis import records
from harness.analysis.records import SCHEMA_VERSION, Record
from conftest import REPO

BASELINE = REPO / "baselines" / "ci.jsonl"
BAR, ESCAPED_BAR = "|", "\\|"  # a type's `|` inside a Markdown table cell


def test_the_committed_baseline_loads_as_version_1_and_round_trips(tmp_path):
    lines = BASELINE.read_text().splitlines()
    read = records.read(BASELINE)
    assert len(read) == len(lines) and all(r.schema_version == SCHEMA_VERSION for r in read)
    assert read[0].protocol == "paper-loop" and read[0]["network"]["name"] == "loopback"
    out = tmp_path / "again.jsonl"
    records.rewrite(out, read)
    for old, new in zip(lines, out.read_text().splitlines()):
        old_d, new_d = json.loads(old), json.loads(new)
        assert new_d["schema_version"] == SCHEMA_VERSION  # a line is written at this version
        del old_d["schema_version"]
        assert {k: new_d[k] for k in old_d} == old_d  # every other key and value kept
        added = {"schema_version", "isolation", "fault_calibration", "observed_rounds"}
        added |= {"deployment", "local", "site_sizes", "assign_fallback", "secure", "local_nodes"}  # defaults
        added |= {"local_s", "input_s", "input_bytes_by_party", "count_by_site"}  # of older lines
        added |= {"stats", "dp", "budget", "budget_spent", "dp_error"}  # stats outputs
        added |= {"criteria", "researcher"}  # defaults: public criteria
        added |= {"setup_s", "setup_bytes", "keys", "topology", "scheme_params"}  # MHE's setup phase
        added |= {"hosts", "placement"}  # version 4: parties on a cluster's nodes
        added |= {"relay_scheduling"}  # the relay thread's scheduling
        added |= {"concurrency", "overlapped"}  # runs at once on a cluster
        assert set(new_d) - set(old_d) <= added


def test_unknown_keys_are_kept_and_dicts_are_accepted_by_the_writer(tmp_path):
    d = json.loads(BASELINE.read_text().splitlines()[0]) | {"from_the_future": [1, 2]}
    w = records.Writer(tmp_path / "r.jsonl")
    w.append(d)
    w.close()
    [r] = records.read(tmp_path / "r.jsonl")
    assert r.unknown == {"from_the_future": [1, 2]} and r["from_the_future"] == [1, 2]
    written = json.loads((tmp_path / "r.jsonl").read_text())
    del d["schema_version"]  # written at this version
    assert written["schema_version"] == SCHEMA_VERSION and {k: written[k] for k in d} == d


def test_a_newer_schema_version_is_one_clear_error(tmp_path):
    d = json.loads(BASELINE.read_text().splitlines()[0]) | {"schema_version": SCHEMA_VERSION + 1}
    path = tmp_path / "new.jsonl"
    path.write_text("\n" + json.dumps(d) + "\n")
    with pytest.raises(InputError) as e:
        records.read(path)
    assert str(e.value).startswith(f"{path}: line 2: schema version {SCHEMA_VERSION + 1} is newer")


def test_a_wrongly_typed_field_names_it(tmp_path):
    d = json.loads(BASELINE.read_text().splitlines()[0]) | {"bytes_by_party": ["many"]}
    with pytest.raises(InputError, match="malformed record: bytes_by_party is"):
        Record.from_json(d)


def _documented_fields() -> list[tuple[str, str, str]]:
    """(name, type, comment) of every JSON field, from the dataclass's source."""
    source = inspect.getsource(Record)
    out = []
    for f in dataclasses.fields(Record):
        if not f.metadata.get("json", True):
            continue
        m = re.search(rf"^    {f.name}: .*?  # (.+)$", source, re.M)
        assert m, f"Record.{f.name} has no comment"
        out.append((f.name, str(f.type), m[1]))
    return out


def test_the_readme_table_is_the_dataclass():
    expected = ["| field | type | meaning |", "| --- | --- | --- |"] + [
        f"| `{name}` | `{kind.replace(BAR, ESCAPED_BAR)}` | {doc} |"
        for name, kind, doc in _documented_fields()
    ]
    readme = (REPO / "README.md").read_text().splitlines()
    start = readme.index(expected[0])
    table = readme[start : start + len(expected) + 1]
    assert table[: len(expected)] == expected, "\n".join(expected)
    assert not table[-1].startswith("|")  # no field the dataclass lacks
