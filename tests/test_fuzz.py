"""Hostile input: seeded mutations of queries, configs and FHIR bundles through the CLI.

Every case must end with exit 0 (the mutation left the input valid) or exit 2 with
one `error:` line naming the file, never a traceback or a hang.
"""

from __future__ import annotations

import copy
import json
import random
import sys
import time
from pathlib import Path

import yaml

from conftest import REPO
from test_mhe_config import BAD as MHE_BAD
from harness import cli

SEED = 20261123
CASES_PER_KIND = 80  # x 6 kinds = 480 cases, and the fixed bad deployments and stats

NATIVE = yaml.safe_load((REPO / "configs/queries/five-criteria.yaml").read_text())
PAPER = json.loads((REPO / "configs/queries/paper-listing1-fixed.json").read_text())
CONFIG = {
    "name": "fuzz",
    "query": str(REPO / "configs/queries/five-criteria.yaml"),
    "populations": ["synthetic:10"],
    "padding": {"conditions": 4, "exams": 6},
    "engines": [{"engine": "mpyc", "protocol": "shamir", "parties": 3}],
    "networks": ["loopback", {"profile": "lan", "links": {"0-2": {"delay_ms": 5}}}],
    "repeats": 1,
    "warmup": 0,
    "timeout_s": 30,
}
SITES_CONFIG = {
    **CONFIG,
    "engines": [{"engine": "mpyc", "protocol": "shamir"}],
    "deployments": [
        "patient",
        {"sites": 3, "partition": "rows", "assign": "provider", "local": "off"},
        {"sites": 3, "partition": "columns", "columns": {"demographics": 0, "conditions": 1, "exams": 2}},
    ],
}
BY_SITE = {"name": "by-site", "output": "count_by_site", "criteria": {"smoker": "never"}}
BAD_CONFIGS = [  # each one clear error naming its field, as (config, what it says)
    # sites (issue 14)
    (  # a group at no site
        {**SITES_CONFIG, "deployments": [{"sites": 3, "partition": "columns", "columns": {"exams": 2}}]},
        "deployments[0]: columns: every group of demographics, conditions, exams needs exactly one site",
    ),
    (  # a group at two sites
        {
            **SITES_CONFIG,
            "deployments": [
                {
                    "sites": 3,
                    "partition": "columns",
                    "columns": {"demographics": [0, 1], "conditions": 1, "exams": 2},
                }
            ],
        },
        "deployments[0]: columns: demographics is assigned to 2 sites [0, 1]",
    ),
    (  # parties != sites
        {
            **SITES_CONFIG,
            "engines": [{"engine": "mpyc", "protocol": "shamir", "parties": 3}],
            "deployments": [{"sites": 5, "partition": "rows"}],
        },
        "engines[0].parties: mpyc/shamir/3p has 3 parties, but deployments[0] has 5 sites",
    ),
    (  # count_by_site: the cohort at each site holding rows, not under columns ...
        {**SITES_CONFIG, "query": BY_SITE, "deployments": SITES_CONFIG["deployments"][1:]},
        "query.output: count_by_site needs sites holding rows, but deployments[1] is columns",
    ),
    (  # ... nor under patient
        {
            **{k: v for k, v in SITES_CONFIG.items() if k != "query"},
            "queries": [CONFIG["query"], BY_SITE],
            "deployments": [{"sites": 3, "partition": "rows"}, "patient"],
        },
        "queries[1].output: count_by_site needs sites holding rows, but deployments[1] is patient",
    ),
    # private criteria (issue 15)
    (
        {**CONFIG, "engines": [{"engine": "mpyc", "parties": 4, "criteria": "private", "max_codes": 1}]},
        "engines[0].max_codes: mpyc/shamir/4p private(r=extra): max_codes 1 is below the 2 codes",
    ),
    (
        {**CONFIG, "engines": [{"engine": "mpyc", "protocol": "paper-loop", "criteria": "private"}]},
        "engines[0].criteria: criteria: private needs a researcher party's input, which MPyC paper-loop",
    ),
    ({**CONFIG, "engines": [{"engine": "plain", "criteria": "private"}]}, "which plain oracle cannot take"),
    (
        {**CONFIG, "engines": [{"engine": "mpyc", "parties": 3, "criteria": "private", "researcher": 5}]},
        "engines[0].researcher: 5 is not a party of 3 (0 to 2)",
    ),
]
BAD_CONFIGS += [(config, says) for config, _, says in MHE_BAD]  # MHE cells (issue 17)
BUNDLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-05-04"}},
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
                "effectiveDateTime": "2019-01-01T00:00:00+00:00",
                "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "8517006"}]},
            }
        },
        {
            "resource": {
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"code": "active"}]},
                "verificationStatus": {"coding": [{"code": "confirmed"}]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "55822004"}]},
                "onsetDateTime": "2010-01-01T00:00:00+00:00",
            }
        },
        {
            "resource": {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "57698-3"}]},
                "effectiveDateTime": "2020-06-01T00:00:00+00:00",
            }
        },
    ],
}

STATS = yaml.safe_load((REPO / "configs/queries/cohort-stats.yaml").read_text())


def _stats(change: dict) -> dict:
    return {**STATS, "output": {**STATS["output"], **change}}


BAD_STATS = [  # stats queries (issue 16), through `check`: (query, what the error says)
    (_stats({"dp": {"epsilon": 0}}), "output.dp.epsilon: dp.epsilon must be > 0"),
    (_stats({"dp": {"epsilon": 1, "delta": 1}}), "output.dp.delta: dp.delta must be in [0, 1)"),
    (_stats({"stats": [{"mean": "weight"}]}), "output.stats[0].mean: unknown attribute 'weight'"),
    (
        _stats({"stats": [{"histogram": {"of": "age", "bins": [0, 65, 18]}}]}),
        "bins must be strictly increasing",
    ),
    (_stats({"stats": [{"histogram": {"of": "age"}}]}), "a histogram of age needs bins"),
    (_stats({"stats": [{"correlation": ["age"]}]}), "correlation takes a list of two attributes"),
    (
        _stats({"dp": {"epsilon": 1, "delta": 1e-6, "weights": {"median(age)": 2}}}),
        "output.dp.weights: dp.weights names median(age)",
    ),
]

ODD_VALUES = [
    None,
    "",
    "x",
    -1,
    0,
    2**70,
    1.5,
    True,
    [],
    {},
    [1, "a"],
    {"a": 1},
    "2021-13-45",
    "synthetic:-3",
    "57698-9",
    5582004,
    "\u00e9\u0000",
    "exact",
]


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


def _mutate_tree(data, rng: random.Random):
    data = copy.deepcopy(data)
    paths = [p for p in _paths(data) if p]
    path = rng.choice(paths)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    action = rng.randrange(4)
    if action == 0:
        del parent[key]
    elif action == 1:
        parent[key] = rng.choice(ODD_VALUES)
    elif action == 2 and isinstance(parent, dict):
        parent[rng.choice(["extra", "Criteria", "ALL", "inverse", "restriction_type"])] = parent[key]
    else:
        parent[key] = [parent[key]] if rng.random() < 0.5 else {"wrapped": parent[key]}
    return data


def _mutate_text(text: str, rng: random.Random) -> str:
    action = rng.randrange(4)
    i = rng.randrange(len(text) + 1)
    if action == 0:
        return text[:i]
    if action == 1:
        return text[:i] + rng.choice(["{", "]", ":", "\t", "\x00", "'", "- - -", "\udcff"]) + text[i:]
    if action == 2:
        j = rng.randrange(i, len(text) + 1)
        return text[:i] + text[j:]
    return text[:i] + text[i:][::-1]


def cases():
    rng = random.Random(SEED)
    kinds = [
        ("query.json", PAPER, json.dumps),
        ("query.yaml", NATIVE, yaml.safe_dump),
        ("config.yaml", CONFIG, yaml.safe_dump),
        ("bundle.json", BUNDLE, json.dumps),
        ("sites-config.yaml", SITES_CONFIG, yaml.safe_dump),
        ("stats-query.yaml", STATS, yaml.safe_dump),
    ]
    for name, seed_data, dump in kinds:
        for i in range(CASES_PER_KIND):
            if rng.random() < 0.7:
                text = dump(
                    _mutate_tree(_mutate_tree(seed_data, rng), rng)
                    if rng.random() < 0.3
                    else _mutate_tree(seed_data, rng)
                )
            else:
                text = _mutate_text(dump(seed_data), rng)
            yield f"{i:03d}-{name}", text
    for i, (bad, _) in enumerate(BAD_CONFIGS):
        yield f"bad{i}-sites-config.yaml", yaml.safe_dump(bad)
    for i, (bad, _) in enumerate(BAD_STATS):
        yield f"bad{i}-stats-query.yaml", yaml.safe_dump(bad)
    yield "no-encounters-sites-bundle.json", json.dumps(BUNDLE)  # assign: provider falls back


def _argv(path: Path, tmp: Path) -> list[str]:
    if path.name.endswith("config.yaml"):
        return ["run", str(path), "--out", str(tmp / "r.jsonl"), "--dry-run"]
    if path.name.endswith("sites-bundle.json"):
        return ["extract", str(path), "--as-of", "2021-04-01", "--sites", "2", "--out", str(tmp / "sites")]
    if path.name.endswith("bundle.json"):
        return ["extract", str(path), "--as-of", "2021-04-01", "--out", str(tmp / "p.jsonl")]
    return ["check", str(path)]


def test_fuzz_corpus(tmp_path, capsys, monkeypatch):
    outcomes: dict[int, int] = {}
    corpus = list(cases())
    assert len(corpus) >= 300
    for name, text in corpus:
        path = tmp_path / name
        path.write_text(text, errors="surrogateescape")
        monkeypatch.setattr(sys, "argv", ["cohortbench", *_argv(path, tmp_path)])
        start = time.perf_counter()
        try:
            cli.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        elapsed = time.perf_counter() - start
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err, (name, captured.err)
        assert code in (0, 2), (name, code, captured.err, text[:300])
        if code == 2:
            lines = [ln for ln in captured.err.splitlines() if ln.startswith("error:")]
            assert lines and (path.name in captured.err or str(path) in captured.err.replace("\n", "")), (
                name,
                captured.err,
            )
        if name.startswith("bad"):  # a fixed bad case: rejected, and for its own reason
            fixed = BAD_STATS if name.endswith("stats-query.yaml") else BAD_CONFIGS
            says = fixed[int(name.removeprefix("bad").split("-")[0])][1]
            assert code == 2 and says in " ".join(captured.err.split()), (name, says, captured.err)
        assert elapsed < 10, (name, elapsed)
        outcomes[code] = outcomes.get(code, 0) + 1
    assert outcomes.get(2, 0) >= 150, outcomes  # most mutations must be rejected, clearly
    print(
        f"fuzz: {len(corpus)} cases, {outcomes.get(2, 0)} rejected with exit 2, "
        f"{outcomes.get(0, 0)} still valid, 0 tracebacks"
    )
