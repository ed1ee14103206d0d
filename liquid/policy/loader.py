"""Load policy YAML into a :class:`PolicySet`, reporting every problem with its file:line:column.

The YAML is composed into nodes first (PyYAML keeps a line/column mark on each node),
then built into plain values while recording the mark of every field path; pydantic
validates the values, and each pydantic error's ``loc`` is mapped back to the node it
came from. Nothing stops at the first error: every problem in every file is collected
and raised together as one :class:`PolicyValidationError`.

Example::

    >>> text = '''
    ... apiVersion: liquid/v1
    ... kind: TieringPolicy
    ... metadata: {name: results}
    ... spec:
    ...   rules:
    ...     - tier: hot
    ...       demoteAfter: 12 hours
    ...     - tier: cold
    ... '''
    >>> load_policy_text(text, "results.yaml")
    Traceback (most recent call last):
    ...
    liquid.policy.problems.PolicyValidationError: invalid policy (1 error):
    results.yaml:8:20: spec.rules[0].demoteAfter: '12 hours' is not a duration; allowed: ...
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, PlainValidator, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from liquid.policy import checks
from liquid.policy.models import (
    API_VERSION,
    DOCUMENT_MODELS,
    DURATION_ALLOWED,
    INSTANT_ALLOWED,
    KINDS,
    MONEY_ALLOWED,
    NAME_ALLOWED,
    RATE_ALLOWED,
    SIZE_ALLOWED,
    TIERS,
    Budget,
    CostModel,
    InvalidValue,
    PolicyDocument,
    PolicySet,
    Source,
    TieringPolicy,
    TieringSpec,
    TierRule,
    format_duration,
    format_rate,
    show,
    to_duration,
    to_instant,
    to_money,
    to_name,
    to_rate,
    to_size,
)
from liquid.policy.problems import PolicyValidationError, Problem, Severity, format_path
from liquid.units import format_size

Path_ = tuple[str | int, ...]
Mark = tuple[int, int]

# Hostile YAML (deep nesting, alias bombs) must end in an error, not a hang or a crash.
MAX_DEPTH = 64
MAX_NODES = 100_000


def load_policies(paths: Iterable[str | Path]) -> PolicySet:
    """Load and validate policy files (a directory means its ``*.yaml`` and ``*.yml`` files).

    Args:
        paths: files or directories.

    Returns:
        The validated :class:`PolicySet`, with notes and warnings attached.

    Raises:
        PolicyValidationError: (a ``PolicyError``) with ``.problems`` listing every error
            in every file, each located as file:line:column and a field path.
    """
    collector = _Collector()
    for path in _expand(paths):
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            collector.files.append(str(path))
            collector.problem(
                str(path), None, "", f"cannot read the file: {reason}", "a readable UTF-8 YAML file"
            )
            continue
        collector.add_text(text, str(path))
    return collector.finish()


def load_policy_text(text: str, filename: str = "<string>") -> PolicySet:
    """Load and validate policy YAML from a string; ``filename`` is used in messages.

    Raises:
        PolicyValidationError: with every problem found, located.
    """
    collector = _Collector()
    collector.add_text(text, filename)
    return collector.finish()


def load_policy_sources(sources: Mapping[str, str]) -> PolicySet:
    """Load and validate several named YAML texts at once (file name → text), e.g. as stored by apply."""
    collector = _Collector()
    for filename, text in sources.items():
        collector.add_text(text, filename)
    return collector.finish()


def _expand(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            yield path


# -- YAML nodes → values with marks --------------------------------------------------------------


@dataclass
class _Built:
    """A document's plain value plus the marks of every path in it."""

    value: Any
    marks: dict[Path_, Mark] = field(default_factory=dict)
    #: Paths the builder already reported (bad tags, keys): pydantic errors there are noise.
    bad: set[Path_] = field(default_factory=set)
    key_marks: dict[Path_, Mark] = field(default_factory=dict)
    start: Mark = (1, 1)


def _mark(node: yaml.Node) -> Mark:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Turns one composed document into plain values, recording where each came from."""

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        self.filename = filename
        self.problems = problems
        self.constructor = yaml.constructor.SafeConstructor()
        self.nodes = 0

    def build(self, node: yaml.Node) -> _Built:
        built = _Built(None, start=_mark(node))
        built.value = self._value(node, (), built, 0)
        return built

    def _error(
        self, mark: Mark, path: Path_, message: str, allowed: str = "", built: _Built | None = None
    ) -> None:
        if built is not None:
            built.bad.add(path)
        self.problems.append(Problem(self.filename, mark[0], mark[1], format_path(path), message, allowed))

    def _value(self, node: yaml.Node, path: Path_, built: _Built, depth: int) -> Any:
        built.marks.setdefault(path, _mark(node))
        self.nodes += 1
        if depth > MAX_DEPTH or self.nodes > MAX_NODES:
            raise _TooBig(_mark(node), path)
        if isinstance(node, yaml.MappingNode):
            own = {id(k) for k, _ in node.value}
            try:
                self.constructor.flatten_mapping(node)  # resolves "<<: *defaults" merge keys
            except yaml.YAMLError as exc:
                self._error(_mark(node), path, f"bad merge key: {getattr(exc, 'problem', exc)}", built=built)
                return {}
            result: dict[str, Any] = {}
            own_keys: set[str] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self._error(
                        _mark(key_node), path, "a mapping key must be a plain name", "a field name", built
                    )
                    continue
                # The raw text, not the YAML 1.1 value: a key "on" or "no" stays a name.
                key = key_node.value
                merged = id(key_node) not in own
                if merged and key in own_keys:
                    continue  # a key written out overrides the same key merged in
                if not merged and key in own_keys:
                    first = built.key_marks[(*path, key)]
                    self._error(
                        _mark(key_node),
                        (*path, key),
                        f"duplicate key {key!r} (first at line {first[0]})",
                        "each key once per mapping",
                        built,
                    )
                    continue
                if not merged:
                    own_keys.add(key)
                built.key_marks[(*path, key)] = _mark(key_node)
                result[key] = self._value(value_node, (*path, key), built, depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self._value(item, (*path, i), built, depth + 1) for i, item in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            # A scalar YAML reads as a date (2020-13-45) but the calendar refuses: say what a date is.
            dated = isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:timestamp"
            allowed = (
                "a real calendar date (2027-01-31) or date-time (2027-01-31T00:00:00Z)"
                if dated
                else "plain YAML values (no !tags)"
            )
            self._error(_mark(node), path, f"cannot read this value: {problem}", allowed, built)
            return None


class _TooBig(Exception):
    def __init__(self, mark: Mark, path: Path_) -> None:
        self.mark = mark
        self.path = path


_SYNTAX_HINTS = {
    "expected <block end>": "consistent indentation: this line does not line up with its mapping",
    "mapping values are not allowed here": "consistent indentation; quote values that contain ': '",
    "could not find expected ':'": "'key: value' pairs at one indentation level per mapping",
    "did not find expected key": "consistent indentation (each key of a mapping starts in the same column)",
    "did not find expected '-' indicator": "list items ('- ') aligned in the same column",
    "found character '\\t' that cannot start any token": "spaces for indentation (YAML forbids tabs)",
    "found a tab character": "spaces for indentation (YAML forbids tabs)",
    "found undefined alias": "aliases (*name) that refer to an anchor (&name) defined earlier",
}


def _syntax_problem(filename: str, exc: yaml.YAMLError, text: str) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    allowed = next((hint for key, hint in _SYNTAX_HINTS.items() if key in str(problem)), "valid YAML")
    line = mark.line + 1 if mark is not None else None
    column = mark.column + 1 if mark is not None else None
    if isinstance(exc, yaml.reader.ReaderError):
        message = f"YAML syntax error: {exc.reason} (character {exc.character!r})"
        allowed = "printable UTF-8 text"
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    return Problem(filename, line, column, "", message, allowed)


# -- pydantic errors → located problems ----------------------------------------------------------

_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text (quote values such as 1.0, yes, no, on, off or null to keep them as text)",
    "dict_type": "a mapping (name: value pairs)",
    "list_type": "a list",
    "tuple_type": "a list (e.g. [a, b], or one '- item' per line)",
    "string_too_short": "non-empty text",
}


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _model_field(model: type[BaseModel], alias: str | int) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if (info.alias or name) == alias:
            return info
    return None


def _walk(root: type[BaseModel], loc: Path_) -> tuple[FieldInfo | None, Any]:
    """The field info (if the last step is a model field) and the type at ``loc``."""
    tp: Any = root
    info: FieldInfo | None = None
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = _model_field(tp, part)
            if info is None:
                return None, None
            tp = info.annotation
        elif get_origin(tp) in (tuple, list) and isinstance(part, int):
            tp, info = get_args(tp)[0], None
        elif get_origin(tp) is dict:
            tp, info = get_args(tp)[1], None
        else:
            return None, None
    return info, _unwrap(tp)


def _fields_of(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return ", ".join(info.alias or name for name, info in tp.model_fields.items())
    return ""


_ALLOWED_BY_VALIDATOR = {
    to_size: SIZE_ALLOWED,
    to_duration: DURATION_ALLOWED,
    to_rate: RATE_ALLOWED,
    to_money: MONEY_ALLOWED,
    to_instant: INSTANT_ALLOWED,
    to_name: NAME_ALLOWED,
}


def _allowed_for(info: FieldInfo | None, tp: Any) -> str:
    """What a field accepts, for messages about a missing value."""
    metadata: list[Any] = list(info.metadata) if info is not None else []
    pending: list[Any] = [info.annotation] if info is not None else []
    while pending:  # Annotated metadata hides inside Optional[...] too
        current = pending.pop()
        if get_origin(current) is Annotated:
            metadata.extend(current.__metadata__)
        pending.extend(a for a in get_args(current) if a is not type(None))
    for meta in metadata:
        if isinstance(meta, PlainValidator) and meta.func in _ALLOWED_BY_VALIDATOR:
            return str(_ALLOWED_BY_VALIDATOR[meta.func])
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if fields := _fields_of(tp):
        return f"a mapping with the fields {fields}"
    return "a value"


def _describe(root: type[BaseModel], err: ErrorDetails, loc: Path_) -> tuple[str, str]:
    """(what is wrong, what is allowed) for one pydantic error."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    info, tp = _walk(root, loc)
    if kind == "value_error" and isinstance(ctx.get("error"), InvalidValue):
        exc = ctx["error"]
        return exc.problem, exc.allowed
    if kind == "extra_forbidden":
        _, parent = _walk(root, loc[:-1])
        return f"unknown field {loc[-1]!r}", "one of " + (_fields_of(parent) or "no fields")
    if kind == "missing":
        what = f" ({info.description[:1].lower()}{info.description[1:]})" if info and info.description else ""
        return f"required field is missing{what}", _allowed_for(info, tp)
    if kind == "literal_error":
        return f"got {show(value)}", f"one of {ctx.get('expected', '')}".replace("' or '", "', '")
    if kind in ("model_type", "model_attributes_type", "dataclass_type"):
        return f"expected a mapping, got {show(value)}", f"a mapping with the fields {_fields_of(tp)}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind].split(' (')[0]}, got {show(value)}", _EXPECTED[kind]
    bounds = {
        "greater_than_equal": ("≥", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("≤", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        sign, key = bounds[kind]
        return f"{show(value)} is out of range", f"a number {sign} {ctx.get(key)}"
    if kind == "string_pattern_mismatch":
        what = (
            info.description
            if info is not None and info.description
            else f"text matching {ctx.get('pattern')}"
        )
        return f"{show(value)} has the wrong form", what
    if kind == "finite_number":
        return f"{show(value)} is not a finite number", "a finite number"
    # Anything unforeseen still gets a located, readable message.
    what = info.description if info is not None and info.description else "see policies/schema.json"
    return f"{err['msg'][:1].lower()}{err['msg'][1:]}", what


# -- semantic checks on one valid document -------------------------------------------------------

Finding = tuple[Path_, str, str, Severity]


def _check_tiering(spec: TieringSpec, rules: Sequence[TierRule | None]) -> Iterator[Finding]:
    """Semantic checks; ``rules`` may hold None for rules that failed type validation."""
    prev_index: int | None = None
    for i, rule in enumerate(rules):
        if rule is None:
            continue
        at: Path_ = ("spec", "rules", i)
        if prev_index is not None:
            prev = rules[prev_index]
            assert prev is not None
            if TIERS.index(rule.tier) <= TIERS.index(prev.tier):
                colder = [t for t in TIERS if TIERS.index(t) > TIERS.index(prev.tier)]
                yield (
                    (*at, "tier"),
                    f"{rule.tier!r} cannot follow {prev.tier!r} (rules[{prev_index}]): rules go from hotter "
                    "to "
                    "colder tiers, one rule per tier",
                    ("one of " + ", ".join(colder))
                    if colder
                    else f"no rule after {prev.tier!r}, the coldest tier",
                    "error",
                )
        prev_index = i
        if i == len(rules) - 1:
            for name in ("demoteAfter", "demoteBelow", "maxAge", "demoteAt"):
                if getattr(rule, _snake(name)) is not None:
                    yield (
                        (*at, name),
                        f"the last rule ({rule.tier}) has no colder tier to demote to",
                        "a colder rule after this one, or archiveAfter / expireAfter",
                        "error",
                    )
        if (
            rule.promote_above is not None
            and rule.demote_below is not None
            and rule.promote_above <= rule.demote_below
        ):
            yield (
                (*at, "promoteAbove"),
                f"promoteAbove {format_rate(rule.promote_above)} is not above demoteBelow "
                f"{format_rate(rule.demote_below)}: objects would bounce between tiers",
                f"a rate above {format_rate(rule.demote_below)}",
                "error",
            )
    sel = spec.selector
    if sel.newer_noncurrent_versions is not None and sel.versions != "noncurrent":
        yield (
            ("spec", "selector", "newerNoncurrentVersions"),
            f"newerNoncurrentVersions counts noncurrent versions, but versions is {sel.versions}",
            "versions: noncurrent in the same selector",
            "error",
        )
    if sel.min_size is not None and sel.max_size is not None and sel.min_size > sel.max_size:
        yield (
            ("spec", "selector", "maxSize"),
            f"maxSize {format_size(sel.max_size)} is below minSize {format_size(sel.min_size)}: "
            "nothing can match",
            f"a size of at least {format_size(sel.min_size)}",
            "error",
        )
    if spec.expire_after is not None:
        if spec.archive_after is not None and spec.archive_after >= spec.expire_after:
            yield (
                ("spec", "archiveAfter"),
                f"archiveAfter {format_duration(spec.archive_after)} is not before expireAfter "
                f"{format_duration(spec.expire_after)}: objects expire before they would be archived",
                "",
                "warning",
            )
        for i, rule in enumerate(rules):
            if rule is not None and rule.max_age is not None and rule.max_age >= spec.expire_after:
                yield (
                    ("spec", "rules", i, "maxAge"),
                    f"maxAge {format_duration(rule.max_age)} is not before expireAfter "
                    f"{format_duration(spec.expire_after)}: objects expire before they leave {rule.tier}",
                    "",
                    "warning",
                )
    if spec.legal_hold and (spec.expire_after is not None or spec.expire_at is not None):
        yield (
            ("spec", "legalHold"),
            "legalHold is true, so expireAfter/expireAt never expire anything until the hold is lifted",
            "",
            "note",
        )


def _check_budget(budget: Budget) -> Iterator[Finding]:
    spec = budget.spec
    tiers = spec.tiers.items()
    if (
        spec.max_bytes is None
        and spec.max_monthly_cost is None
        and spec.max_monthly_retrieval_cost is None
        and not tiers
    ):
        yield (
            ("spec",),
            "this Budget sets no limit",
            "maxBytes, maxMonthlyCost, maxMonthlyRetrievalCost, or tiers.<tier>.maxBytes / maxMonthlyCost",
            "error",
        )
    if spec.namespace is not None:
        if spec.tenant is None:
            yield (
                ("spec", "namespace"),
                "a namespace Budget needs its tenant",
                "tenant: <tenant id>",
                "error",
            )
        for name in ("max_bytes", "max_monthly_cost", "max_monthly_retrieval_cost"):
            if getattr(spec, name) is not None:
                alias = "".join(w.capitalize() if i else w for i, w in enumerate(name.split("_")))
                yield (
                    ("spec", alias),
                    f"a namespace Budget caps tiers only, not {alias}",
                    "tiers.<tier>.maxBytes / maxMonthlyCost (or a tenant Budget without namespace)",
                    "error",
                )
    for tier, limit in tiers:
        if limit.max_bytes is None and limit.max_monthly_cost is None:
            yield (
                ("spec", "tiers", tier),
                f"no limit set for {tier}",
                "maxBytes and/or maxMonthlyCost",
                "error",
            )


def _check_cost_model(model: CostModel) -> Iterator[Finding]:
    if not model.spec.tiers.items():
        yield (("spec", "tiers"), "no tier has a price", "prices for hot, warm, cold and/or archive", "error")


def _snake(alias: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in alias)


def _partial_tiering_checks(data: dict[str, Any], errors: list[ErrorDetails]) -> Iterator[Finding]:
    """Semantic checks on the parts of an invalid TieringPolicy spec that did validate."""
    raw = data.get("spec")
    if not isinstance(raw, dict):
        return
    bad_keys = {e["loc"][1] for e in errors if len(e["loc"]) > 1 and e["loc"][0] == "spec"}
    raw_rules = raw.get("rules")
    rules: list[TierRule | None] = []
    if isinstance(raw_rules, list):
        for item in raw_rules:
            try:
                rules.append(TierRule.model_validate(item))
            except ValidationError:
                rules.append(None)
    rest = {k: v for k, v in raw.items() if k not in bad_keys and k != "rules"}
    try:
        spec = TieringSpec.model_validate(rest)
    except ValidationError:
        return
    yield from _check_tiering(spec, rules)


# -- collecting documents and problems -----------------------------------------------------------


class _Collector:
    """Accumulates documents and problems across files, then builds the PolicySet or raises."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.problems: list[Problem] = []
        self.documents: list[tuple[PolicyDocument, Source]] = []

    def problem(
        self,
        file: str,
        mark: Mark | None,
        path: str,
        message: str,
        allowed: str = "",
        severity: Severity = "error",
    ) -> None:
        line, column = mark if mark is not None else (None, None)
        self.problems.append(Problem(file, line, column, path, message, allowed, severity))

    def add_text(self, text: str, filename: str) -> None:
        self.files.append(filename)
        try:
            loader = yaml.SafeLoader(text)  # checks for unprintable characters up front
        except yaml.YAMLError as exc:
            self.problems.append(_syntax_problem(filename, exc, text))
            return
        builder = _Builder(filename, self.problems)
        count = 0
        try:
            while loader.check_node():
                node = loader.get_node()
                if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
                    continue  # an empty document ("---" with nothing after it)
                count += 1
                try:
                    built = builder.build(node)
                except _TooBig as big:
                    self.problem(
                        filename,
                        big.mark,
                        format_path(big.path),
                        "the document is nested too deeply or expands to too many values",
                        f"at most {MAX_DEPTH} levels and {MAX_NODES} values",
                    )
                    continue
                self._add_document(built, filename)
        except yaml.YAMLError as exc:
            self.problems.append(_syntax_problem(filename, exc, text))
        except RecursionError:
            self.problem(
                filename, None, "", "YAML syntax error: nested too deeply", f"at most {MAX_DEPTH} levels"
            )
        finally:
            loader.dispose()
        if count == 0 and not any(p.file == filename for p in self.problems):
            self.problem(filename, None, "", "no policy documents in this file", "", "warning")

    def _add_document(self, built: _Built, filename: str) -> None:
        data = built.value
        if not isinstance(data, dict):
            self.problem(
                filename,
                built.start,
                "",
                f"a policy document must be a mapping, got {show(data)}",
                "a mapping with apiVersion, kind, metadata and spec",
            )
            return
        kind = data.get("kind")
        if not isinstance(kind, str) or kind not in DOCUMENT_MODELS:
            mark = built.marks.get(("kind",), built.start)
            got = "no kind" if "kind" not in data else f"kind {show(kind)}"
            self.problem(
                filename, mark, "kind", f"unknown document type: {got}", "one of " + ", ".join(KINDS)
            )
            if data.get("apiVersion") != API_VERSION:
                self._api_version_problem(data, built, filename)
            return
        model = DOCUMENT_MODELS[kind]
        source = Source(filename, built.start[0], built.start[1], built.marks)
        try:
            document: PolicyDocument = model.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
            for err in errors:
                self._pydantic_problem(model, err, built, filename)
            if kind == "TieringPolicy":
                # Semantic errors elsewhere in the document are worth reporting now, not
                # after the next round of fixes.
                reported = {tuple(e["loc"]) for e in errors}
                for finding in _partial_tiering_checks(data, errors):
                    if finding[0] not in reported:
                        self._finding(source, finding)
            return
        findings: Iterator[Finding]
        if isinstance(document, TieringPolicy):
            findings = _check_tiering(document.spec, document.spec.rules)
        elif isinstance(document, Budget):
            findings = _check_budget(document)
        else:
            findings = _check_cost_model(document)
        before = len(self.problems)
        for finding in findings:
            self._finding(source, finding)
        if not any(p.severity == "error" for p in self.problems[before:]):
            self.documents.append((document, source))

    def _finding(self, source: Source, finding: Finding) -> None:
        path, message, allowed, severity = finding
        self.problem(source.file, source.locate(path), format_path(path), message, allowed, severity)

    def _api_version_problem(self, data: dict[str, Any], built: _Built, filename: str) -> None:
        mark = built.marks.get(("apiVersion",), built.start)
        message = f"got {show(data['apiVersion'])}" if "apiVersion" in data else "required field is missing"
        self.problem(filename, mark, "apiVersion", message, f"'{API_VERSION}'")

    def _pydantic_problem(
        self, model: type[BaseModel], err: ErrorDetails, built: _Built, filename: str
    ) -> None:
        loc: Path_ = tuple(err["loc"])
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
        if any(loc[: len(bad)] == bad for bad in built.bad):
            return
        message, allowed = _describe(model, err, loc)
        if err["type"] == "extra_forbidden" and loc in built.key_marks:
            mark = built.key_marks[loc]
        elif err["type"] == "missing":
            mark = built.marks.get(loc[:-1]) or Source(filename, *built.start, built.marks).locate(loc[:-1])
        else:
            mark = Source(filename, *built.start, built.marks).locate(loc)
        self.problem(filename, mark, format_path(loc), message, allowed)

    def finish(self) -> PolicySet:
        self._cross_document_checks()
        # Report in reading order: by file (as given), then line and column.
        order = {name: i for i, name in enumerate(dict.fromkeys(self.files))}
        self.problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line or 0, p.column or 0))
        errors = [p for p in self.problems if p.severity == "error"]
        if errors:
            raise PolicyValidationError(self.problems)
        tiering = sorted(
            (d for d, _ in self.documents if isinstance(d, TieringPolicy)),
            key=lambda p: (-p.spec.priority, p.name),
        )
        sources: dict[tuple[str, str], Source] = {(d.kind, d.name): s for d, s in self.documents}
        draft = PolicySet(
            tiering=tuple(tiering),
            budgets=tuple(d for d, _ in self.documents if isinstance(d, Budget)),
            cost_models=tuple(d for d, _ in self.documents if isinstance(d, CostModel)),
            sources=sources,
        )
        notes = [p for p in self.problems if p.severity == "note"]
        warnings = [p for p in self.problems if p.severity == "warning"]
        found = checks.overlaps(draft) + checks.static_warnings(draft)
        notes += [p for p in found if p.severity == "note"]
        warnings += [p for p in found if p.severity == "warning"]
        return PolicySet(
            tiering=draft.tiering,
            budgets=draft.budgets,
            cost_models=draft.cost_models,
            sources=sources,
            notes=tuple(notes),
            warnings=tuple(warnings),
        )

    def _cross_document_checks(self) -> None:
        seen: dict[tuple[str, str], Source] = {}
        per_tenant: dict[tuple[str, str | None, str | None], tuple[str, Source]] = {}
        kept: list[tuple[PolicyDocument, Source]] = []
        for document, source in self.documents:
            key = (document.kind, document.name)
            if key in seen:
                first = seen[key]
                self.problem(
                    source.file,
                    source.locate(("metadata", "name")),
                    "metadata.name",
                    f"duplicate {document.kind} name {document.name!r}; first defined at "
                    f"{first.file}:{first.line}:{first.column}",
                    f"a name no other {document.kind} uses",
                )
                continue
            seen[key] = source
            if isinstance(document, Budget | CostModel):
                tenant = document.spec.tenant
                namespace = document.spec.namespace if isinstance(document, Budget) else None
                scope_key = (document.kind, tenant, namespace)
                if scope_key in per_tenant:
                    first_name, first = per_tenant[scope_key]
                    whom = f"tenant {tenant!r}" if tenant else "everything (no tenant)"
                    if namespace is not None:
                        whom += f", namespace {namespace!r}"
                    path: Path_ = ("spec", "tenant") if tenant else ("metadata", "name")
                    self.problem(
                        source.file,
                        source.locate(path),
                        format_path(path),
                        f"a second {document.kind} for {whom}; {first_name!r} at "
                        f"{first.file}:{first.line}:{first.column} already covers it",
                        f"one {document.kind} per tenant and one without a tenant; merge them",
                    )
                    continue
                per_tenant[scope_key] = (document.name, source)
            kept.append((document, source))
        self.documents = kept
