"""The one error type for bad input: which file, which field, what is wrong, how to fix it."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterator, Sequence

from pydantic import BaseModel


class InputError(Exception):
    """Bad user input (query, config, data), reported as `source: location: problem; fix`."""

    def __init__(self, source: str, location: str, problem: str, fix: str = "") -> None:
        super().__init__(source, location, problem, fix)
        self.source, self.location, self.problem, self.fix = source, location, problem, fix

    def __str__(self) -> str:
        where = f"{self.source}: {self.location}" if self.location else self.source
        return f"{where}: {self.problem}" + (f"; {self.fix}" if self.fix else "")


def format_location(loc: Sequence[object]) -> str:
    """('restrictions', 2, 'min_age') -> 'restrictions[2].min_age'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def from_pydantic(
    source: str,
    error,
    drop: frozenset[str] = frozenset(),
    dedupe: frozenset[str] = frozenset(),
    model: type[BaseModel] | None = None,
) -> InputError:
    """The first error of a pydantic ValidationError, as an InputError with its exact location.

    An unknown key is reported before the rest (a misspelt key is also a missing one),
    with the closest key that `model` allows there.  pydantic inserts discriminated-union
    tags into locations: tags in `drop` are removed, tags in `dedupe` (which are also key
    names) are kept once.
    """
    errors = error.errors(include_url=False)
    e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc: list = []
    for part in e["loc"]:
        if part in drop or (part in dedupe and loc and loc[-1] == part):
            continue
        loc.append(part)
    kind, msg = e["type"], e["msg"]
    fixes = {
        "missing": "add this key",
        "extra_forbidden": "remove it or check its spelling",
        "int_type": "write a whole number",
        "bool_type": "write true or false",
        "string_type": "write a string",
        "list_type": "write a list",
        "literal_error": "",
        "union_tag_invalid": "",
        "union_tag_not_found": "",
    }
    problem = {"missing": "required key is missing", "extra_forbidden": "unknown key"}.get(
        kind, msg.removeprefix("Value error, ")
    )
    fix = fixes.get(kind, "")
    if kind == "extra_forbidden":
        problem = f"unknown key {e['loc'][-1]!r}"
        if model is not None:
            keys = known_keys(model, e["loc"])
            fix = did_you_mean(str(e["loc"][-1]), keys) or f"{fix}; known keys: {', '.join(keys)}"
    elif kind != "missing" and "input" in e and not isinstance(e["input"], (dict, list)):
        problem += f" (got {e['input']!r})"
    return InputError(source, format_location(loc), problem, fix)


def did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    """ "did you mean 'x'?" for the closest of `choices` to `word` (None when none is close)."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else None


def known_keys(model: type[BaseModel], loc: Sequence[object]) -> list[str]:
    """The keys allowed beside the last part of a pydantic error location in `model`:
    the location is followed field by field, list indexes skipped, and a union tag
    keeps the members with that tag (a Literal field value)."""
    models = [model]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = [f for m in models for name, f in m.model_fields.items() if part in (name, f.alias)]
        if fields:
            models = [inner for f in fields for inner in _models_in(f.annotation)]
        else:
            models = [m for m in models if part in _literals(m)] or models
    return sorted({f.alias or name for m in models for name, f in m.model_fields.items()})


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    """The models an annotation holds, through Union, Annotated, list and dict (not inside them)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _literals(model: type[BaseModel]) -> set[object]:
    return {
        v
        for f in model.model_fields.values()
        if typing.get_origin(f.annotation) is typing.Literal
        for v in typing.get_args(f.annotation)
    }
