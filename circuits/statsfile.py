"""The `output: {stats: ...}` key of both query formats, read into `circuits.stats`.

    output:
      stats:
        - count
        - mean: age                          # also sum, variance, std
        - histogram: {of: gender}            # categorical: gender, smoker, site
        - histogram: {of: age, bins: [0, 18, 40, 65, 151]}
        - correlation: [age, {exams: {loinc: 57698-3, within_months: 36}}]
      by_site: false
      dp: {epsilon: 1.0, delta: 1.0e-6, mechanism: discrete-gaussian}
      suppress_below: 10

Every error names its place (`output.stats[2].histogram.bins`) and the fix.
"""

from __future__ import annotations

from typing import Any

from circuits import codes
from circuits.errors import InputError, did_you_mean
from circuits.ir import MAX_MONTHS
from circuits.stats import CATEGORIES, MECHANISMS, NUMERIC, Aggregate, Attribute, Privacy, Stats

_OPS = ("count", "sum", "mean", "variance", "std", "histogram", "correlation")
_ATTRIBUTES = (*NUMERIC, *CATEGORIES, "site")
_KEYS = ("stats", "by_site", "dp", "suppress_below")
_DP_KEYS = ("epsilon", "delta", "mechanism", "weights")


def is_stats(output: object) -> bool:
    """Whether a query's `output` value is a stats mapping (not `eligible`, `count`, ...)."""
    return isinstance(output, dict)


def parse_stats(output: Any, source: str, where: str = "output") -> Stats:
    """The Stats of an `output` mapping; InputError naming the field otherwise."""
    for key in output:
        if key not in _KEYS:
            raise InputError(source, f"{where}.{key}", f"unknown key {key!r}", _hint(str(key), _KEYS))
    entries = output.get("stats")
    if not isinstance(entries, list) or not entries:
        raise InputError(
            source, f"{where}.stats", "stats is a list of one or more aggregates", "e.g. [count]"
        )
    aggregates = tuple(_aggregate(e, source, f"{where}.stats[{i}]") for i, e in enumerate(entries))
    by_site = output.get("by_site", False)
    if not isinstance(by_site, bool):
        raise InputError(source, f"{where}.by_site", f"not true or false: {by_site!r}", "write true or false")
    dp = None if output.get("dp") is None else _privacy(output["dp"], source, f"{where}.dp")
    below = output.get("suppress_below", 0)
    if not _whole(below) or below < 0:
        raise InputError(source, f"{where}.suppress_below", f"not a whole number >= 0: {below!r}")
    try:
        return Stats(aggregates, by_site, dp, below)
    except ValueError as e:
        field = "dp.weights" if "dp.weights" in str(e) else "stats"
        raise InputError(source, f"{where}.{field}", str(e)) from None


def _aggregate(entry: Any, source: str, where: str) -> Aggregate:
    if entry == "count":
        return Aggregate("count")
    if not isinstance(entry, dict) or len(entry) != 1:
        fix = "write count, or a mapping of one key: " + ", ".join(_OPS[1:])
        raise InputError(source, where, f"not an aggregate: {entry!r}", fix)
    op, arg = next(iter(entry.items()))
    if op not in _OPS[1:]:
        raise InputError(source, f"{where}.{op}", f"unknown aggregate {op!r}", _hint(str(op), _OPS))
    here = f"{where}.{op}"
    try:
        if op == "histogram":
            return _histogram(arg, source, here)
        if op == "correlation":
            if not isinstance(arg, list) or len(arg) != 2:
                raise ValueError("correlation takes a list of two attributes, e.g. [age, {exams: ...}]")
            return Aggregate(op, tuple(_attribute(a, source, f"{here}[{i}]") for i, a in enumerate(arg)))
        return Aggregate(op, (_attribute(arg, source, here),))
    except ValueError as e:
        raise InputError(source, here, str(e)) from None


def _histogram(arg: Any, source: str, where: str) -> Aggregate:
    if not isinstance(arg, dict) or "of" not in arg:
        raise ValueError("a histogram is {of: ATTRIBUTE} or {of: ATTRIBUTE, bins: [edges]}")
    for key in arg:
        if key not in ("of", "bins"):
            raise InputError(
                source, f"{where}.{key}", f"unknown key {key!r}", _hint(str(key), ("of", "bins"))
            )
    bins = arg.get("bins", [])
    if not isinstance(bins, list) or not all(map(_whole, bins)):
        raise InputError(source, f"{where}.bins", f"bins are a list of whole numbers, not {bins!r}")
    return Aggregate("histogram", (_attribute(arg["of"], source, f"{where}.of"),), tuple(bins))


def _attribute(arg: Any, source: str, where: str) -> Attribute:
    if isinstance(arg, str) and arg in _ATTRIBUTES and arg != "exams":
        return Attribute(arg)  # type: ignore[arg-type]  # one of the literal kinds, checked
    if isinstance(arg, dict) and list(arg) == ["exams"]:
        return _exams(arg["exams"], source, f"{where}.exams")
    word = arg if isinstance(arg, str) else next(iter(arg), "") if isinstance(arg, dict) else ""
    fix = (
        _hint(str(word), _ATTRIBUTES)
        or "one of age, gender, smoker, site, or {exams: {loinc, within_months}}"
    )
    raise InputError(source, where, f"unknown attribute {arg!r}", fix)


def _exams(arg: Any, source: str, where: str) -> Attribute:
    if not isinstance(arg, dict) or set(arg) != {"loinc", "within_months"}:
        raise InputError(
            source,
            where,
            "exams needs exactly loinc and within_months",
            "e.g. {loinc: 57698-3, within_months: 36}",
        )
    months = arg["within_months"]
    if not _whole(months) or not 0 <= months <= MAX_MONTHS:
        raise InputError(
            source, f"{where}.within_months", f"not a whole number from 0 to {MAX_MONTHS}: {months!r}"
        )
    try:
        return Attribute("exams", codes.parse_loinc(arg["loinc"]), months)
    except ValueError as e:
        raise InputError(source, f"{where}.loinc", str(e)) from None


def _privacy(arg: Any, source: str, where: str) -> Privacy:
    if not isinstance(arg, dict) or "epsilon" not in arg:
        raise InputError(source, where, "dp needs epsilon", "e.g. {epsilon: 1.0, delta: 1.0e-6}")
    for key in arg:
        if key not in _DP_KEYS:
            raise InputError(source, f"{where}.{key}", f"unknown key {key!r}", _hint(str(key), _DP_KEYS))
    for key in ("epsilon", "delta"):
        if key in arg and (isinstance(arg[key], bool) or not isinstance(arg[key], (int, float))):
            raise InputError(source, f"{where}.{key}", f"not a number: {arg[key]!r}")
    mechanism = arg.get("mechanism", MECHANISMS[0])
    if mechanism not in MECHANISMS:
        raise InputError(
            source, f"{where}.mechanism", f"unknown mechanism {mechanism!r}", "use " + " or ".join(MECHANISMS)
        )
    weights = _weights(arg.get("weights", {}), source, f"{where}.weights")
    try:
        return Privacy(float(arg["epsilon"]), float(arg.get("delta", 0.0)), mechanism, weights)
    except ValueError as e:
        key = next((k for k in ("weights", "delta") if k in str(e)), "epsilon")
        raise InputError(source, f"{where}.{key}", str(e)) from None


def _weights(arg: Any, source: str, where: str) -> tuple[tuple[str, float], ...]:
    """`weights: {aggregate name: weight}`, e.g. {"mean(age)": 2}."""
    fix = 'a mapping of aggregate names to numbers, e.g. {"mean(age)": 2}'
    if not isinstance(arg, dict):
        raise InputError(source, where, f"not a mapping: {arg!r}", fix)
    for name, w in arg.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)):
            raise InputError(source, f"{where}.{name}", f"not a number: {w!r}", fix)
    return tuple((str(n), float(w)) for n, w in arg.items())


def _whole(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _hint(word: str, choices: tuple[str, ...]) -> str:
    return did_you_mean(word, list(choices)) or "use one of " + ", ".join(choices)


def dump_stats(stats: Stats) -> dict:
    """The `output` mapping of a Stats: parse_stats(dump_stats(s)) == s."""
    out: dict[str, Any] = {"stats": [_dump_aggregate(g) for g in stats.aggregates]}
    if stats.by_site:
        out["by_site"] = True
    if stats.dp is not None:
        out["dp"] = {"epsilon": stats.dp.epsilon, "delta": stats.dp.delta, "mechanism": stats.dp.mechanism}
        if stats.dp.weights:
            out["dp"]["weights"] = dict(stats.dp.weights)
    if stats.suppress_below:
        out["suppress_below"] = stats.suppress_below
    return out


def _dump_aggregate(g: Aggregate) -> object:
    if g.op == "count":
        return "count"
    attrs = [_dump_attribute(a) for a in g.of]
    if g.op == "histogram":
        return {"histogram": {"of": attrs[0], **({"bins": list(g.bins)} if g.bins else {})}}
    return {g.op: attrs if g.op == "correlation" else attrs[0]}


def _dump_attribute(a: Attribute) -> object:
    if a.kind == "exams":
        return {"exams": {"loinc": codes.format_loinc(a.loinc), "within_months": a.within_months}}
    return a.kind
