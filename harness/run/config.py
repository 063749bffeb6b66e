"""Experiment configs: a YAML factorial grid, validated with exact error locations.

The keys named in the README (name, query, as_of, populations, padding,
engines, networks, repeats, warmup, timeout_s, compare_to) are a contract.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import re
import shlex
from pathlib import Path
from dataclasses import asdict, dataclass, replace
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError
from pydantic import model_validator

from backends import registry
from backends.engine import Spec
from circuits import secret
from circuits.cost import DataBounds
from circuits.errors import InputError, did_you_mean, from_pydantic
from circuits.holdings import PATIENT_HELD
from circuits.ir import Output, Query
from circuits.population import EXACT, Padding, Population
from circuits.queryfile import load_query, parse_query, read_structured
from harness.net.networks import PROFILES, Network, parse_network
from harness.net.relay import LinkShape
from harness.data import sources
from harness.data.sources import Source, parse_source
from harness.run import deployment
from harness.run.cluster import STRATEGIES, PartyPlacement
from harness.run.deployment import DeploymentField


def _check_padding(v: Any) -> Any:
    if isinstance(v, dict):
        unknown = sorted(set(map(str, v)) - {"conditions", "exams"})
        if unknown:
            hint = did_you_mean(unknown[0], ("conditions", "exams")) or "use conditions and exams"
            raise ValueError(f"unknown key {unknown[0]!r}; {hint}")
        Padding(**v)
    return v


_PaddingSpec = Annotated[
    Union[Literal["exact"], dict[str, Union[int, Literal["exact"]]]], AfterValidator(_check_padding)
]
_QueryRef = Union[str, dict[str, Any]]


def _to_padding(spec: Any) -> Padding:
    return Padding(EXACT, EXACT) if spec == EXACT else Padding(**spec)


CRITERIA_KEYS = ("criteria", "researcher", "max_codes")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _engine_spec() -> Any:
    """An `engines:` entry: the spec of the engine its `engine:` key names."""
    specs = tuple(e.spec for e in registry.engines().values())
    return Annotated[Union[specs], Field(discriminator="engine")]  # type: ignore[valid-type]


EngineSpec = _engine_spec()


class SitePopulations(_Model):
    """`{sites: {0: DIR_A, 1: DIR_B}}`: each site's own patients (bundle directory or patients file)."""

    sites: Annotated[dict[Annotated[int, Field(ge=0)], str], Field(min_length=1)]

    def text(self) -> str:
        """The population's name in records and engines' `populations:`, e.g. `sites{0: a, 1: b}`."""
        return "sites{" + ", ".join(f"{k}: {v}" for k, v in sorted(self.sites.items())) + "}"


def _population_tag(v: Any) -> str:
    return "site-populations" if isinstance(v, (dict, SitePopulations)) else "population-name"


POPULATION_TAGS = frozenset({"site-populations", "population-name"})
PopulationField = Annotated[
    Union[Annotated[str, Tag("population-name")], Annotated[SitePopulations, Tag("site-populations")]],
    Discriminator(_population_tag),
]


class _PrivacyBudget(_Model):
    epsilon: Annotated[float, Field(gt=0)]
    delta: Annotated[float, Field(ge=0, lt=1)] = 0.0


class Config(_Model):
    name: str
    query: _QueryRef | None = None
    queries: Annotated[list[_QueryRef], Field(min_length=1)] | None = None  # a query axis
    as_of: dt.date | None = None
    populations: Annotated[list[PopulationField], Field(min_length=1)]
    padding: _PaddingSpec = Field(default_factory=lambda: {"conditions": 16, "exams": 32})
    paddings: Annotated[list[_PaddingSpec], Field(min_length=1)] | None = None  # a padding axis
    engines: Annotated[list[EngineSpec], Field(min_length=1)]  # type: ignore[valid-type]
    networks: Annotated[list[Union[str, dict[str, Any]]], Field(min_length=1)] = ["loopback"]
    deployments: Annotated[list[DeploymentField], Field(min_length=1)] = ["patient"]  # who holds the data
    network_profiles: dict[str, dict[str, Any]] = {}  # user profiles, beside the built-in ones
    repeats: Annotated[int, Field(ge=1)] = 3
    warmup: Annotated[int, Field(ge=0)] = 1
    timeout_s: Annotated[float, Field(gt=0)] = 300
    compare_to: dict[str, Any] | None = None
    truncate: bool = False
    interleave: bool = False  # run repeat by repeat across cells instead of cell by cell
    budget_s: Annotated[float, Field(gt=0)] | None = None  # skip larger populations past it
    # The privacy budget of each data source (population) for DP queries, or `unlimited`
    # (benchmarks): `harness.privacy.budget`.
    budget: Union[Literal["unlimited"], _PrivacyBudget] | None = None
    # An axis of the DP queries' dp.epsilon: each DP query once per value (named "... eps=E").
    epsilons: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] | None = None
    isolation: Literal["auto", "netns", "none"] = "auto"  # a network namespace per run
    rounds_calibration: bool = True  # one lock-step run per setting counts its rounds
    # Defaults of the engines' keys of the same names (an engine's own key wins): the
    # criteria public or private, who inputs them, the codes a condition node is padded to.
    criteria: Literal["public", "private"] | None = None
    researcher: Union[Literal["extra"], Annotated[int, Field(ge=0)]] | None = None
    max_codes: Annotated[int, Field(ge=1)] | None = None
    # A Ray cluster's address: each run's parties on its nodes (harness.run.cluster), placed
    # as `placement` says (a strategy, and party index -> {resources: ...}); checked by `_cluster`.
    cluster: str | None = None
    placement: dict[Union[int, str], Any] | None = None
    # On a cluster: how many runs at once, each on nodes of its own (harness.run.sweep).
    concurrency: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="before")
    @classmethod
    def _criteria_defaults(cls, data: Any) -> Any:
        """The experiment's criteria keys copied into each engine entry that lacks them
        (but an engine in the clear: its one party has no researcher)."""
        if not isinstance(data, dict) or not isinstance(data.get("engines"), list):
            return data
        given = {k: data[k] for k in CRITERIA_KEYS if data.get(k) is not None}
        engines = registry.engines()
        entries = []
        for entry in data["engines"]:
            own = engines.get(entry.get("engine")) if isinstance(entry, dict) else None
            clear = own is not None and all(f.max_parties == 1 for f in own.spec.defaults.values())
            entries.append(entry if own is None or clear else {**given, **entry})
        return {**data, "engines": entries}

    @model_validator(mode="after")
    def _one_query_key(self) -> Config:
        if (self.query is None) == (self.queries is None):
            raise ValueError("give either query: (one) or queries: (a list, one cell axis)")
        return self

    @model_validator(mode="after")
    def _engine_populations(self) -> Config:
        names = [p if isinstance(p, str) else p.text() for p in self.populations]
        for i, e in enumerate(self.engines):
            for p in e.populations or ():
                if p not in names:
                    raise ValueError(
                        f"engines[{i}].populations: {p!r} is not one of the config's populations {names}"
                    )
        return self

    def profiles(self) -> dict[str, LinkShape | None]:
        out = dict(PROFILES)
        for name, spec in self.network_profiles.items():
            out[name] = parse_network(spec, PROFILES).default
        return out

    @model_validator(mode="after")
    def _networks(self) -> Config:
        for i, spec in enumerate(self.networks):
            try:
                network = parse_network(spec, self.profiles())
            except ValueError as e:
                raise ValueError(f"networks[{i}]: {e}") from None
            for j, e in enumerate(self.engines):
                if 1 < e.parties < network.fault_parties:
                    raise ValueError(
                        f"networks[{i}]: its faults name party "
                        f"{network.fault_parties - 1}, but engines[{j}] "
                        f"({e.label}) has {e.parties} parties (0 to {e.parties - 1})"
                    )
        return self


@dataclass(frozen=True)
class Experiment:
    """A validated config with its queries, paddings and sources resolved."""

    path: Path
    config: Config
    queries: tuple[Query, ...]
    paddings: tuple[Padding, ...]
    networks: tuple[Network, ...]
    sources: tuple[Source, ...]
    warnings: tuple[str, ...]
    config_hash: str  # of the config as written (before any overrides)
    overrides: dict[str, Any]  # the command line's overrides, as recorded (`Overrides.record`)
    engines_at: tuple[tuple[Spec, ...], ...] = ()  # per deployment: the engines, parties = its sites
    cluster: str | None = None  # a Ray cluster's address (None: every party here)
    placement: PartyPlacement | None = None  # on that cluster: how parties spread over its nodes

    def population(self, src: Source, padding: Padding, warn: Callable[[str], None]) -> Population:
        """A source of the grid at one of its paddings; a bound exceeded names this config."""
        try:
            return sources.load(src, padding, self.config.as_of, self.config.truncate, warn)
        except InputError as e:
            if e.location != "padding":
                raise
            where = f"padding {padding.label()}, population {src.text}"
            raise InputError(str(self.path), where, e.problem, e.fix) from None


def _hash(config: Config) -> str:
    """Of the config's keys; the default `deployments: [patient]` is left out, so that a
    config written before deployments keeps its hash (and its results resume)."""
    data = config.model_dump(mode="json")
    if data["deployments"] == ["patient"]:
        del data["deployments"]
    for key, unset in (("cluster", None), ("placement", None), ("concurrency", 1)):
        if data[key] == unset:  # the hash of a config written before the key
            del data[key]
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Overrides:
    """Changes to a config from the command line, for a quick try (`run --repeats 1 ...`):
    applied to its keys before they are validated, and recorded in the results."""

    repeats: int | None = None
    populations: tuple[str, ...] | None = None  # replaces `populations:`
    networks: tuple[str, ...] | None = None  # names: the config's networks of that name, or profiles
    engines: str | None = None  # keeps the engines whose label matches (comma-separated globs)
    cluster: str | None = None  # replaces `cluster:`
    concurrency: int | None = None  # replaces `concurrency:`

    def record(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None}

    def argv(self) -> str:
        """The options that give these overrides again, e.g. "--repeats 1 --networks lan"."""
        return " ".join(
            f"--{k} {shlex.quote(','.join(v) if isinstance(v, list) else str(v))}"
            for k, v in self.record().items()
        )

    def apply(self, data: dict, config: Config) -> dict:
        """The config's keys with the overrides applied (`config`: the keys validated as written)."""
        out = dict(data)
        if self.repeats is not None:
            out["repeats"] = self.repeats
        if self.engines is not None:
            out["engines"] = _engines_matching(self.engines, data["engines"], config)
        if self.populations is not None:
            out["populations"] = list(self.populations)
            out["engines"] = [_restrict(e, self.populations) for e in out["engines"]]
        if self.networks is not None:
            out["networks"] = [spec for name in self.networks for spec in _networks_named(name, config)]
        if self.cluster is not None:
            out["cluster"] = self.cluster
        if self.concurrency is not None:
            out["concurrency"] = self.concurrency
        return out


def _engines_matching(filters: str, entries: list, config: Config) -> list:
    """The engine entries whose label (e.g. mpyc/shamir/3p) matches one of the
    comma-separated filters: a glob, or else a part of the label."""
    labels = [e.label for e in config.engines]
    wanted = [f if set(f) & set("*?[") else f"*{f}*" for f in filters.split(",") if f]
    kept = [e for e, label in zip(entries, labels) if any(fnmatch.fnmatch(label, w) for w in wanted)]
    if not kept:
        raise InputError(
            "--engines",
            "",
            f"{filters!r} matches none of the config's engines ({', '.join(labels)})",
            "give part of a label, e.g. mpyc/shamir, or a glob, e.g. '*/semi/*'",
        )
    return kept


def _restrict(entry: Any, populations: tuple[str, ...]) -> Any:
    """An engine entry's own `populations:`, kept to those of the overriding list."""
    if not isinstance(entry, dict) or entry.get("populations") is None:
        return entry
    return {**entry, "populations": [p for p in entry["populations"] if p in populations]}


def _networks_named(name: str, config: Config) -> list:
    """The config's networks called `name`, or else `name` itself (a profile)."""
    profiles = config.profiles()
    named = [spec for spec in config.networks if parse_network(spec, profiles).name == name]
    return named or [name]


def _validate(data: dict, source: str) -> Config:
    _other_engines_protocol(data, source)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        drop = frozenset(registry.locations()) | deployment.TAGS | POPULATION_TAGS
        raise from_pydantic(source, e, drop=drop, model=Config) from None


def _other_engines_protocol(data: dict, source: str) -> None:
    """A protocol written under an engine that has none of that name, but another engine has."""
    engines = registry.engines()
    entries = data.get("engines")
    for i, entry in enumerate(entries if isinstance(entries, list) else ()):
        own = engines.get(entry.get("engine")) if isinstance(entry, dict) else None
        protocol = entry.get("protocol") if own is not None else None
        if own is None or not isinstance(protocol, str) or protocol in own.spec.defaults:
            continue
        for other in engines.values():
            if protocol in other.spec.defaults:
                raise InputError(
                    source,
                    f"engines[{i}].protocol",
                    f"{protocol} is {_article(other.spec.title)} {other.spec.title} protocol "
                    f"(engine: {other.name})",
                    f"write engine: {other.name}, or one of {own.spec.title}'s protocols: "
                    + ", ".join(own.spec.defaults),
                )


def _article(title: str) -> str:
    """ "an" before a vowel sound: a vowel, or a capital letter read as "em", "ef", ..."""
    vowel_sound = title[:1].lower() in "aeiou" or (title[:2].isupper() and title[0] in "FHLMNRSX")
    return "an" if vowel_sound else "a"


def load_experiment(path: Path, overrides: Overrides = Overrides()) -> Experiment:
    """Read and validate a YAML experiment config, with any command-line overrides;
    errors name the file (and the overriding option) and the key."""
    source = str(path)
    data = read_structured(path)
    if not isinstance(data, dict):
        raise InputError(
            source, "", "an experiment config is a mapping of keys", "see the README for a full example"
        )
    written = _validate(data, source)
    given = overrides.record()
    try:
        final = overrides.apply(data, written) if given else data
        config = _validate(final, source) if given else written
        exp = _resolve(path, config, _hash(written), given)
        exp = replace(exp, engines_at=_engines_at(source, config, final["engines"]))
        _queries_fit(source, exp)
        return exp
    except InputError as e:
        key = re.split(r"[.\[: ]", e.location or e.problem)[0]  # a model check names it first
        if key in given and e.source == source:
            raise InputError(f"{source} with --{key}", e.location, e.problem, e.fix) from None
        raise


def _engines_at(source: str, config: Config, entries: list) -> tuple[tuple[Spec, ...], ...]:
    """The engines of each deployment: under sites, an engine's parties are the sites
    (an omitted `parties` defaults to them; a different one is an error), except that
    an engine of one party (in the clear) keeps it."""
    out = []
    for j, dep in enumerate(config.deployments):
        if isinstance(dep, str):
            _no_sites_needed(source, config, j)
            out.append(tuple(config.engines))
            continue
        specs = []
        for i, (e, entry) in enumerate(zip(config.engines, entries)):
            if e.facts.max_parties == 1:  # in the clear (the oracle): one party whatever holds the data
                specs.append(e)
                continue
            given = isinstance(entry, dict) and "parties" in entry
            parties = dep.sites + e.parties - e.data_parties  # an extra researcher is one more
            if given and e.parties != parties:
                extra = " plus the researcher" if parties > dep.sites else ""
                raise InputError(
                    source,
                    f"engines[{i}].parties",
                    f"{e.label} has {e.parties} parties, but deployments[{j}] has {dep.sites} sites{extra} "
                    "(site i is party i)",
                    f"write parties: {parties}, or omit parties (it then defaults to that)",
                )
            try:
                specs.append(type(e).model_validate({**e.model_dump(), "parties": parties}))
            except ValidationError as err:
                problem = from_pydantic(source, err).problem
                raise InputError(
                    source,
                    f"deployments[{j}].sites",
                    f"engines[{i}] ({e.label}): {problem}",
                    "choose a site count the protocol runs with, or another protocol",
                ) from None
        out.append(tuple(specs))
    return tuple(out)


def _no_sites_needed(source: str, config: Config, j: int) -> None:
    """Under the patient deployment `deployments[j]`, no engine that runs only with sites."""
    for i, e in enumerate(config.engines):
        if e.facts.sites_only:
            raise InputError(
                source,
                f"deployments[{j}]",
                f"engines[{i}] ({e.label}) runs only where sites hold the data, but deployments[{j}] "
                "is patient (party 0 holds every record): it needs a partition",
                "give a deployment such as {sites: 3, partition: rows}, or drop patient from deployments",
            )


def _queries_fit(source: str, exp: Experiment) -> None:
    """Every engine setting can run every query under each deployment (`Spec.query_problem`)."""
    for j, (dep, specs) in enumerate(zip(exp.config.deployments, exp.engines_at)):
        holdings = PATIENT_HELD if isinstance(dep, str) else dep.holdings()
        for i, spec in enumerate(specs):
            for k, query in enumerate(exp.queries):
                found = spec.query_problem(query, holdings)
                if found is not None:
                    where = "query" if exp.config.query is not None else f"queries[{k}]"
                    problem, fix = found
                    said = f"{spec.label} on {where} under deployments[{j}]: {problem}"
                    raise InputError(source, f"engines[{i}]", said, fix)


def _source(path: Path, config: Config, where: str, spec: str | SitePopulations) -> Source:
    """A `populations:` entry parsed; a path relative to the cwd, else to the config."""
    if isinstance(spec, SitePopulations):
        parts = tuple(
            (site, _source(path, config, f"{where}.sites.{site}", text))
            for site, text in sorted(spec.sites.items())
        )
        for site, part in parts:
            if part.kind == "synthetic":
                raise InputError(
                    str(path),
                    f"{where}.sites.{site}",
                    "a site's population is its own patients",
                    "give a FHIR bundle directory or a patients.jsonl",
                )
        return Source(spec.text(), "sites", parts=parts)
    beside = path.parent / spec
    found = (
        str(beside)
        if not spec.startswith("synthetic") and not Path(spec).exists() and beside.exists()
        else spec
    )
    try:
        src = replace(parse_source(found, str(path)), text=spec)
    except InputError as e:
        raise InputError(str(path), where, e.problem, e.fix) from None
    if src.needs_as_of and config.as_of is None:
        raise InputError(
            str(path), "as_of", f"{where} is FHIR data, which needs a reference date", "add as_of: YYYY-MM-DD"
        )
    return src


def _sites_cover(source: str, config: Config, sources: list[Source]) -> None:
    """Per-site populations name sites of every deployment, which must spread them by rows."""
    for i, src in enumerate(sources):
        for j, dep in enumerate(config.deployments):
            if not src.parts or isinstance(dep, str):
                continue
            last = src.parts[-1][0]
            if dep.partition == "columns" or last >= dep.sites:
                raise InputError(
                    source,
                    f"populations[{i}].sites",
                    f"sites {[site for site, _ in src.parts]} do not fit deployments[{j}] "
                    f"({dep.partition}, {dep.sites} sites)",
                    "per-site populations go with partition: rows and sites covering every site named",
                )


def _outputs_fit(source: str, config: Config, queries: list[Query]) -> None:
    """`count_by_site` is the cohort at each site, and stats `by_site` (or of `site`) the
    aggregates at each: every deployment must spread rows."""
    for i, q in enumerate(queries):
        where = "query" if config.query is not None else f"queries[{i}]"
        for j, dep in enumerate(config.deployments):
            rows = not isinstance(dep, str) and dep.partition == "rows"
            if q.stats is not None and q.stats.needs_sites and not rows:
                raise InputError(
                    source,
                    f"{where}.output.by_site",
                    "statistics by site (by_site, or a histogram of site) need sites holding rows, "
                    f"but deployments[{j}] is " + (dep if isinstance(dep, str) else f"{dep.partition}"),
                    "drop by_site and site, or use only partition: rows deployments",
                )
            if q.output is Output.COUNT_BY_SITE and not rows:
                raise InputError(
                    source,
                    f"{where}.output",
                    f"count_by_site needs sites holding rows, but deployments[{j}] is "
                    + (dep if isinstance(dep, str) else f"{dep.partition}"),
                    "use output count or eligible, or only partition: rows deployments",
                )


def _private_fits(source: str, config: Config, queries: list[Query]) -> None:
    """Private criteria: every query can be hidden (codes within `max_codes`, exam types
    in the public vocabulary)."""
    for i, e in enumerate(config.engines):
        if not e.private:
            continue
        for j, q in enumerate(queries):
            try:
                secret.hide(q, DataBounds(), 1, e.max_codes)
            except ValueError as err:
                where = "query" if config.query is not None else f"queries[{j}]"
                codes = "max_codes" in str(err)
                raise InputError(
                    source,
                    f"engines[{i}].max_codes" if codes else where,
                    f"{e.label}: {err}",
                    f"raise max_codes to {secret.codes_needed(q.root)} or more"
                    if codes
                    else "use criteria: public for this query",
                ) from None


def _epsilon_axis(source: str, config: Config, queries: list[Query]) -> list[Query]:
    """With `epsilons`, each DP query once per epsilon (its delta and mechanism kept)."""
    if config.epsilons is None:
        return queries
    if not any(q.stats is not None and q.stats.dp is not None for q in queries):
        raise InputError(
            source, "epsilons", "no query has dp to vary", "add dp to a stats query, or drop epsilons"
        )
    out = []
    for q in queries:
        if q.stats is None or q.stats.dp is None:
            out.append(q)
            continue
        stats = q.stats
        out += [
            replace(q, name=f"{q.name} eps={e:g}", stats=replace(stats, dp=replace(stats.dp, epsilon=e)))
            for e in config.epsilons
        ]
    return out


def _resolve(path: Path, config: Config, config_hash: str, overrides: dict[str, Any]) -> Experiment:
    """A validated config's queries read, paddings, sources and networks parsed."""
    source = str(path)
    warnings: list[str] = []
    queries = []
    refs = [config.query] if config.query is not None else config.queries or []
    for i, ref in enumerate(refs):
        where = "query" if config.query is not None else f"queries[{i}]"
        if isinstance(ref, str):
            qpath = Path(ref)
            if not qpath.is_absolute() and not qpath.exists():
                qpath = path.parent / qpath
            if not qpath.is_file():
                raise InputError(
                    source,
                    where,
                    f"query file {ref!r} not found",
                    "give a path relative to the config or the current directory",
                )
            query, said = load_query(qpath)
        else:
            query, said = parse_query(ref, f"{source}: {where}", config.name)
        queries.append(query)
        warnings += said
    queries = _epsilon_axis(source, config, queries)
    paddings = tuple(map(_to_padding, config.paddings or [config.padding]))
    sources = [_source(path, config, f"populations[{i}]", spec) for i, spec in enumerate(config.populations)]
    _sites_cover(source, config, sources)
    _outputs_fit(source, config, queries)
    _private_fits(source, config, queries)
    profiles = config.profiles()
    networks = tuple(parse_network(spec, profiles) for spec in config.networks)
    placement = _cluster(source, config)
    cluster = config.cluster if placement is not None else None
    return Experiment(
        path,
        config,
        tuple(queries),
        paddings,
        networks,
        tuple(sources),
        tuple(warnings),
        config_hash,
        overrides,
        cluster=cluster,
        placement=placement,
    )


_ADDRESS = re.compile(r"(ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")
LOCAL = "local"  # `cluster: local`: every party here, as without a cluster
_ADDRESS_FIX = (
    "give auto (the cluster this machine's `ray start` joined), HOST:PORT (the head's address "
    "as `ray start --head` prints it), ray://HOST:PORT (Ray Client) or local (no cluster)"
)


def _cluster(source: str, config: Config) -> PartyPlacement | None:
    """`cluster:` an address Ray takes, and `placement:` a strategy and pinned parties
    (None: the parties run here; `local` says so, whatever `placement:` says)."""
    if config.concurrency > 1 and config.cluster in (None, LOCAL):
        raise InputError(
            source,
            "concurrency",
            f"concurrency: {config.concurrency} runs cells at once on a cluster's disjoint nodes, "
            "but the parties run here, where runs at once would share its cores",
            "add cluster: ADDRESS (or --cluster ADDRESS), or set concurrency: 1",
        )
    if config.cluster == LOCAL:
        return None
    if config.cluster is None:
        if config.placement is not None:
            raise InputError(
                source,
                "placement",
                "placement spreads parties over a cluster, but no cluster: is given",
                "add cluster: ADDRESS (or --cluster ADDRESS), or drop placement",
            )
        return None
    if config.cluster != "auto" and not _ADDRESS.fullmatch(config.cluster):
        raise InputError(source, "cluster", f"{config.cluster!r} is not a Ray cluster address", _ADDRESS_FIX)
    if config.isolation == "netns":
        raise InputError(
            source,
            "isolation",
            "isolation: netns puts a run in a namespace here, but cluster: runs its "
            "parties on the cluster's nodes",
            "set isolation: auto (or none), or drop cluster",
        )
    strategy, pins = "STRICT_SPREAD", {}
    most = max(e.parties for e in config.engines)
    for key, value in (config.placement or {}).items():
        if key == "strategy":
            if value not in STRATEGIES:
                raise InputError(
                    source,
                    "placement.strategy",
                    f"{value!r} is not a Ray placement strategy",
                    "use one of " + ", ".join(STRATEGIES),
                )
            strategy = value
            continue
        party = int(key) if isinstance(key, int) or str(key).isdigit() else None
        if party is None or party >= most:
            raise InputError(
                source,
                f"placement.{key}",
                f"{key!r} is neither strategy nor a party of any engine (0 to {most - 1})",
                "key each pinned party by its index, e.g. 0: {resources: {site_a: 1}}",
            )
        pins[party] = _pin(source, f"placement.{key}", value)
    return PartyPlacement(strategy, pins)


def _pin(source: str, where: str, value: Any) -> dict[str, float]:
    """A pinned party's `{resources: {NAME: AMOUNT, ...}}`: custom resources its node carries."""
    fix = (
        "write {resources: {NAME: AMOUNT}}: a custom resource of the nodes it may run on "
        "(ray start --resources)"
    )
    if not isinstance(value, dict) or set(value) != {"resources"}:
        raise InputError(source, where, "a pinned party is a mapping with the one key resources", fix)
    resources = value["resources"]
    if not isinstance(resources, dict) or not resources:
        raise InputError(source, f"{where}.resources", "resources is a mapping, not empty", fix)
    for name, amount in resources.items():
        if (
            not isinstance(name, str)
            or isinstance(amount, bool)
            or not isinstance(amount, (int, float))
            or amount <= 0
        ):
            raise InputError(
                source, f"{where}.resources.{name}", f"{amount!r} is not a positive amount of {name!r}", fix
            )
    return {name: float(amount) for name, amount in resources.items()}
