"""Query front ends: the paper's query.json and our native YAML/JSON tree, both to the IR.

The paper's format (Listing 1) is a flat list of `restrictions`, ANDed, each
with an `inverse` flag.  The native format nests `all`/`any`/`not` over the
five leaf criteria and round-trips through the IR (`dump_native`).  Both are
validated with pydantic so that an error names its exact field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias, Union, cast

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError
from pydantic import field_validator

from circuits import codes
from circuits.errors import InputError, did_you_mean, format_location, from_pydantic
from circuits.ir import MAX_AGE, MAX_MONTHS, AgeRange, And, ExamCount, Gender, HasCondition, Node, Not, Or
from circuits.ir import Output, Query, Smoker
from circuits.statsfile import dump_stats, is_stats, parse_stats
from circuits.visitor import Visitor


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_AgeBound = Annotated[int, Field(ge=-1, le=MAX_AGE + 1)]
_AtLeast = Annotated[int, Field(ge=1)]
_Months = Annotated[int, Field(ge=0, le=MAX_MONTHS)]
_SmallCode = Annotated[int, Field(ge=0, le=codes.SMALL_DOMAIN - 1)]


def _check_loinc(v: int | str) -> int:
    return codes.parse_loinc(v)


def _output(v: Any) -> Any:
    """An output mode's name, or a stats mapping (read by `circuits.statsfile`)."""
    names = [o.value for o in Output if o is not Output.STATS]
    if is_stats(v) or v in names:
        return v
    raise ValueError(f"output must be one of {', '.join(names)}, or a mapping with stats")


# --- the paper's query.json -------------------------------------------------------------


class _PaperCode(_Strict):
    """A restriction to one code of a small public domain (`node` is its IR type)."""

    value: _SmallCode
    inverse: bool = False
    node: ClassVar[type[Gender] | type[Smoker]]

    def leaf(self) -> Node:
        return self.node(self.value)


class _PaperSmoker(_PaperCode):
    restriction_type: Literal["SMOKER"]
    node = Smoker


class _PaperGender(_PaperCode):
    restriction_type: Literal["GENDER"]
    node = Gender


class _PaperAge(_Strict):
    restriction_type: Literal["AGE"]
    min_age: _AgeBound
    max_age: _AgeBound
    inverse: bool = False

    def leaf(self) -> Node:
        return AgeRange(self.min_age, self.max_age)


class _PaperCondition(_Strict):
    restriction_type: Literal["CONDITION"]
    value: Union[int, list[int]]
    inverse: bool = False

    @property
    def codes(self) -> list[int]:
        return [self.value] if isinstance(self.value, int) else self.value

    def leaf(self) -> Node:
        return HasCondition(tuple(self.codes))


class _PaperExams(_Strict):
    restriction_type: Literal["NUMBEREXAMS"]
    nr_exams: _AtLeast
    type: Union[int, str]
    nr_months: _Months
    inverse: bool = False

    _loinc = field_validator("type")(classmethod(lambda cls, v: _check_loinc(v)))

    def leaf(self) -> Node:
        return ExamCount(int(self.type), self.nr_exams, self.nr_months)


_PaperLeaf = Union[_PaperSmoker, _PaperGender, _PaperAge, _PaperCondition, _PaperExams]
_PaperRestriction = Annotated[_PaperLeaf, Field(discriminator="restriction_type")]
_PAPER_TAGS = frozenset({"SMOKER", "GENDER", "AGE", "CONDITION", "NUMBEREXAMS"})


class _PaperQuery(_Strict):
    params: list[str] = []
    restrictions: Annotated[list[_PaperRestriction], Field(min_length=1)]
    output: Annotated[Any, AfterValidator(_output)] = "eligible"  # ours: the paper reveals bits


# --- the native tree --------------------------------------------------------------------


def _criterion_kind(v: Any) -> str | None:
    if isinstance(v, dict) and len(v) == 1:
        return next(iter(v))
    return None


class _AgeSpec(_Strict):
    min_exclusive: _AgeBound
    max_exclusive: _AgeBound


class _ExamSpec(_Strict):
    loinc: Union[int, str]
    at_least: _AtLeast
    within_months: _Months

    _loinc = field_validator("loinc")(classmethod(lambda cls, v: _check_loinc(v)))


class _All(_Strict):
    all: Annotated[list["_Criterion"], Field(min_length=1)]

    def to_ir(self) -> Node:
        return And(tuple(c.to_ir() for c in self.all))


class _Any(_Strict):
    any: Annotated[list["_Criterion"], Field(min_length=1)]

    def to_ir(self) -> Node:
        return Or(tuple(c.to_ir() for c in self.any))


class _Not(_Strict):
    model_config = ConfigDict(populate_by_name=False)
    not_: "_Criterion" = Field(alias="not")

    def to_ir(self) -> Node:
        return Not(self.not_.to_ir())


class _Age(_Strict):
    age: _AgeSpec

    def to_ir(self) -> Node:
        return AgeRange(self.age.min_exclusive, self.age.max_exclusive)


def _enum_code(names: tuple[str, ...], what: str) -> AfterValidator:
    """A code given as its number or its name (`codes.parse_enum`), checked after the type."""
    return AfterValidator(lambda v: codes.parse_enum(v, names, what))


class _Gender(_Strict):
    gender: Annotated[Union[int, str], _enum_code(codes.GENDERS, "gender")]

    def to_ir(self) -> Node:
        return Gender(int(self.gender))


class _Smoker(_Strict):
    smoker: Annotated[Union[int, str], _enum_code(codes.SMOKER_STATES, "smoking status")]

    def to_ir(self) -> Node:
        return Smoker(int(self.smoker))


class _Condition(_Strict):
    condition: Union[int, Annotated[list[int], Field(min_length=1)]]

    @field_validator("condition")
    @classmethod
    def _snomed(cls, v: int | list[int]) -> list[int]:
        for c in [v] if isinstance(v, int) else v:
            if not codes.snomed_valid(c):
                raise ValueError(_snomed_problem(c))
        return [v] if isinstance(v, int) else v

    def to_ir(self) -> Node:
        return HasCondition(tuple(cast(list[int], self.condition)))  # a list once validated


class _Exams(_Strict):
    exams: _ExamSpec

    def to_ir(self) -> Node:
        e = self.exams
        return ExamCount(int(e.loinc), e.at_least, e.within_months)


_NATIVE_KINDS = {
    "all": _All,
    "any": _Any,
    "not": _Not,
    "age": _Age,
    "gender": _Gender,
    "smoker": _Smoker,
    "condition": _Condition,
    "exams": _Exams,
}
if TYPE_CHECKING:
    _Criterion: TypeAlias = Union[_All, _Any, _Not, _Age, _Gender, _Smoker, _Condition, _Exams]
else:
    _Criterion = Annotated[
        Union[tuple(Annotated[model, Tag(tag)] for tag, model in _NATIVE_KINDS.items())],
        Discriminator(
            _criterion_kind,
            custom_error_type="criterion",
            custom_error_message="a criterion is a mapping with exactly one key: " + ", ".join(_NATIVE_KINDS),
        ),
    ]
for _m in (_All, _Any, _Not):
    _m.model_rebuild()


class _NativeQuery(_Strict):
    name: str | None = None
    output: Annotated[Any, AfterValidator(_output)] = "eligible"
    criteria: _Criterion


# --- conversion -------------------------------------------------------------------------


def _snomed_problem(code: int) -> str:
    hint = codes.snomed_suggestion(code)
    text = f"{code} is not a valid SNOMED CT concept id (its Verhoeff check digit fails)"
    if hint:
        text += f"; did you mean {hint} ({codes.KNOWN_CONDITIONS[hint]})?"
    return text


def _paper_to_ir(r: _PaperLeaf, where: str, source: str, strict: bool, warnings: list[str]) -> Node:
    if isinstance(r, _PaperCondition):
        _check_paper_conditions(r.codes, where, source, strict, warnings)
    node = r.leaf()
    return Not(node) if r.inverse else node


def _check_paper_conditions(
    values: list[int], where: str, source: str, strict: bool, warnings: list[str]
) -> None:
    """A legacy query's invalid SNOMED CT codes: an error with `strict`, else kept with a warning."""
    for c in values:
        if not codes.snomed_valid(c):
            problem = _snomed_problem(c)
            if strict:
                raise InputError(source, f"{where}.value", problem, "correct the code")
            warnings.append(
                f"{source}: {where}.value: {problem} Kept as written: "
                "it matches no patient (use --strict to make this an error)"
            )


def parse_query(data: Any, source: str, name: str = "query", strict: bool = False) -> tuple[Query, list[str]]:
    """A Query from parsed JSON/YAML data in either format, plus warnings to show the user."""
    warnings: list[str] = []
    if isinstance(data, dict) and "restrictions" in data:
        try:
            paper = _PaperQuery.model_validate(data)
        except ValidationError as e:
            raise from_pydantic(source, e, drop=_PAPER_TAGS, model=_PaperQuery) from None
        nodes = []
        for i, r in enumerate(paper.restrictions):
            try:
                nodes.append(_paper_to_ir(r, f"restrictions[{i}]", source, strict, warnings))
            except ValueError as e:
                raise InputError(source, f"restrictions[{i}]", str(e)) from None
        root: Node = nodes[0] if len(nodes) == 1 else And(tuple(nodes))
        return _query(root, paper.output, name, source), warnings
    if isinstance(data, dict) and "criteria" in data:
        try:
            native = _NativeQuery.model_validate(data)
            root = native.criteria.to_ir()
        except ValidationError as e:
            raise _unknown_criterion(source, e) or from_pydantic(
                source, e, dedupe=frozenset(_NATIVE_KINDS), model=_NativeQuery
            ) from None
        except ValueError as e:  # a relation between fields, checked by the IR
            raise InputError(source, "criteria", str(e)) from None
        return _query(root, native.output, native.name or name, source), warnings
    fix = "a paper query.json has 'restrictions'; a native query has 'criteria'"
    for key in data if isinstance(data, dict) else ():
        hint = did_you_mean(str(key), ("criteria", "restrictions"))
        if hint:
            raise InputError(source, str(key), f"not a cohort query: unknown key {key!r}", hint)
    raise InputError(source, "", "not a cohort query", fix)


def _query(root: Node, output: str | dict, name: str, source: str) -> Query:
    if is_stats(output):
        return Query(root, Output.STATS, name, parse_stats(output, source))
    return Query(root, Output(output), name)


def _unknown_criterion(source: str, error: ValidationError) -> InputError | None:
    """A criterion of one unknown key (`smokr: former`), named, with the closest kind."""
    e = error.errors(include_url=False)[0]
    given = e.get("input")
    if e["type"] != "criterion" or not isinstance(given, dict) or len(given) != 1:
        return None
    key = str(next(iter(given)))
    loc = [part for i, part in enumerate(e["loc"]) if not (i and part == e["loc"][i - 1])]
    return InputError(
        source,
        format_location(loc),
        f"unknown criterion {key!r}",
        did_you_mean(key, list(_NATIVE_KINDS)) or "a criterion is one of " + ", ".join(_NATIVE_KINDS),
    )


def load_query(path: Path, strict: bool = False) -> tuple[Query, list[str]]:
    """Read a query file (.json, .yaml or .yml, either format)."""
    return parse_query(read_structured(path), str(path), path.stem, strict)


def read_structured(path: Path) -> Any:
    """JSON or YAML from a file, with errors naming the file and line."""
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(str(path), "", f"cannot read: {e.strerror}", "check the path") from None
    except UnicodeDecodeError:
        raise InputError(str(path), "", "not a text file", "give a JSON or YAML file") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise InputError(
            str(path), f"line {e.lineno} column {e.colno}", f"invalid JSON: {e.msg}", "fix the syntax"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise InputError(str(path), where, f"invalid YAML: {problem}", "fix the syntax") from None


def dump_native(query: Query) -> dict:
    """The native form of a query: parse_query(dump_native(q)) == q."""
    output = query.output.value if query.stats is None else dump_stats(query.stats)
    return {"name": query.name, "output": output, "criteria": NativeWriter().visit(query.root)}


class NativeWriter(Visitor[dict]):
    """Each node as its native criterion: a mapping with one key."""

    target = "the native query format"

    def visit_age_range(self, node: AgeRange) -> dict:
        return {"age": {"min_exclusive": node.min_exclusive, "max_exclusive": node.max_exclusive}}

    def visit_gender(self, node: Gender) -> dict:
        return {"gender": codes.GENDERS[node.code]}

    def visit_smoker(self, node: Smoker) -> dict:
        return {"smoker": codes.SMOKER_STATES[node.code]}

    def visit_has_condition(self, node: HasCondition) -> dict:
        return {"condition": list(node.codes)}

    def visit_exam_count(self, node: ExamCount) -> dict:
        return {
            "exams": {
                "loinc": node.loinc_code,
                "at_least": node.at_least,
                "within_months": node.within_months,
            }
        }

    def visit_not(self, node: Not) -> dict:
        return {"not": self.visit(node.child)}

    def visit_and(self, node: And) -> dict:
        return {"all": [self.visit(c) for c in node.children]}

    def visit_or(self, node: Or) -> dict:
        return {"any": [self.visit(c) for c in node.children]}
