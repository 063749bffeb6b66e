"""The one error type for bad input: which file, which field, what is wrong, how to fix it."""

from __future__ import annotations

from collections.abc import Sequence


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
    source: str, error, drop: frozenset[str] = frozenset(), dedupe: frozenset[str] = frozenset()
) -> InputError:
    """The first error of a pydantic ValidationError, as an InputError with its exact location.

    pydantic inserts discriminated-union tags into locations: tags in `drop` are
    removed, tags in `dedupe` (which are also key names) are kept once.
    """
    e = error.errors(include_url=False)[0]
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
    if kind not in ("missing",) and "input" in e and not isinstance(e["input"], (dict, list)):
        problem += f" (got {e['input']!r})"
    return InputError(source, format_location(loc), problem, fixes.get(kind, ""))
