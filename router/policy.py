"""The residency policy document: parse, validate strictly, report errors by line.

`load_policy(text)` returns a `LoadedPolicy` or raises `PolicyInvalid` carrying every problem
found as a `PolicyError(line, column, path, message)`: YAML syntax, the schema (pydantic
models below, unknown keys forbidden everywhere) and the meaning (unknown groups, countries
or regions, duplicate ids, group cycles, malformed labels, ...). Lines and columns are
1-based and point at the offending key or list item.

Scalars are read as strings and only the models convert them (to booleans, datetimes): YAML
1.1's implicit typing would otherwise read the country code `NO` (Norway) as `false` and an
unquoted `version: 2026.10` as the float 2026.1, while a policy's version must be kept
exactly as written.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from domicile.catalog.dataset_ids import pattern_problems
from domicile.catalog.regions import REGION_ID, Region, RegionRegistry, builtin_groups, is_country
from domicile.router.locations import (
    LocationError,
    LocationResolver,
    TokenKind,
    find_group_cycles,
)

API_VERSION = "domicile/v1"
KIND = "ResidencyPolicy"

# A classification label as datasets carry it: dotted upper-case segments (PII.CONTACT).
LABEL = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*$")
GROUP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# The budget of one document, the same for the server and `domicile policy check`. Aliases
# may expand a small text into a huge tree ("billion laughs"): every node is counted once per
# place it appears, keys included, and a real policy has a few thousand at most. With the text
# size this bounds memory; the time budget bounds a document that is costly in another way.
MAX_POLICY_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_CHARACTERS = 2 * MAX_POLICY_BYTES  # of all scalars, keys included, once aliases are expanded
MAX_SECONDS = 10.0
# What one error report may hold: every message is cut to MAX_MESSAGE characters (messages
# quote the document's values) and at most MAX_ERRORS are listed, then how many more there were.
MAX_MESSAGE = 300
MAX_ERRORS = 100

Path = tuple[str | int, ...]


# --------------------------------------------------------------------------------------------
# Errors


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


@dataclass(frozen=True)
class PolicyError:
    """One problem in a policy document. `line`/`column` are 1-based, 0 when unknown;
    `path` is where in the document, e.g. `rules[2].match.origins[0]`."""

    line: int
    column: int
    path: str
    message: str

    def __post_init__(self) -> None:
        # Messages and paths quote the document; a report stays readable (and small).
        object.__setattr__(self, "path", _bounded(self.path))
        object.__setattr__(self, "message", _bounded(self.message))

    def format(self, filename: str) -> str:
        """`FILE:LINE:COL: path: message`, the form compilers and editors understand."""
        where = f"{self.path}: " if self.path else ""
        return f"{filename}:{self.line}:{self.column}: {where}{self.message}"


class PolicyInvalid(Exception):
    """The document is not a valid policy; `errors` lists every problem, in document order."""

    def __init__(self, errors: list[PolicyError]) -> None:
        self.errors = errors
        first = errors[0] if errors else None
        summary = f"{first.line}:{first.column}: {first.path}: {first.message}" if first else "invalid policy"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"invalid policy: {summary}{more}")


def format_path(path: Path) -> str:
    """`("rules", 2, "match")` -> `rules[2].match`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


# --------------------------------------------------------------------------------------------
# The document, as pydantic models

Name = Annotated[str, StringConstraints(min_length=1)]
Verb = Literal["allow", "deny"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(_Strict):
    name: Name
    # Kept exactly as written: decisions, GetPolicy and SetPolicy report it.
    version: Name
    description: str = ""


class PrivateRegion(_Strict):
    """A region the policy adds to the builtin registry (an on-premises data centre)."""

    id: Name
    country: Name
    display_name: str = ""


class Match(_Strict):
    """When a rule applies: any-of within each key, keys AND-ed; an empty match applies to
    every dataset. Classifications match hierarchically (`PII` matches `PII.CONTACT`)."""

    classifications: tuple[Name, ...] = ()
    origins: tuple[Name, ...] = ()


class Permission(_Strict):
    """Where an operation may happen: `allow` (absent = this rule does not restrict the base
    set) and `deny` (always subtracted)."""

    allow: tuple[Name, ...] | None = None
    deny: tuple[Name, ...] = ()


class Rule(_Strict):
    id: Name
    citation: str = ""
    description: str = ""
    match: Match
    store: Permission | None = None
    process: Permission | None = None
    # False: no exemption can override what this rule excludes (sanctions).
    exemptible: bool = True


class Declassifier(_Strict):
    """A lineage transform that removes labels (and their descendants) from its outputs, when
    a job granted it applies it: `jobs` are glob patterns (`fnmatch`, case-sensitive, `*`
    also matches `/`) over job ids `namespace/name` (a job without `/` is `default/<job>`);
    `["*"]` grants every job, `[]` none. A transform claimed by any other job is a plain copy.

    `jobs` is required of a policy set now; None only in a policy recorded in the policy
    history before declassifiers named their jobs, where it keeps its meaning then: any job.
    """

    transform: Name
    removes: tuple[Name, ...] = Field(min_length=1)
    jobs: tuple[Name, ...] | None = None


class Exemption(_Strict):
    """An approved, expiring permission for datasets matching `dataset` (exact id or glob,
    `fnmatch` rules: `*` also matches `/`) to be stored/processed in `regions`."""

    id: Name
    dataset: Name
    operation: Literal["store", "process", "both"]
    regions: tuple[Name, ...] = Field(min_length=1)
    expires: AwareDatetime
    approved_by: Name
    reason: str = ""


class Defaults(_Strict):
    """The base set when no applicable rule has an `allow` for the operation, and how
    datasets known only as lineage outputs are judged: `undescribed_outputs: inherit` by what
    flows to them, `deny` as undescribed (DENY / UNKNOWN_DATASET until registered). Unset,
    `inherit` -- except in a policy recorded before the switch existed, which keeps `deny`."""

    classified: Verb = "deny"
    unclassified: Verb = "allow"
    undescribed_outputs: Literal["inherit", "deny"] | None = None


class PolicyTestDataset(_Strict):
    id: str = ""
    classifications: tuple[Name, ...] = ()
    origins: tuple[Name, ...] = ()


class PolicyTest(_Strict):
    """An inline test: the decision for `dataset` (taken as its effective attributes) must
    be `want`. `now` defaults to the time the tests run."""

    name: Name
    dataset: PolicyTestDataset
    operation: Literal["store", "process"]
    region: Name
    want: Verb
    now: AwareDatetime | None = None


class PolicyDocument(_Strict):
    api_version: Literal["domicile/v1"] = Field(alias="apiVersion")
    kind: Literal["ResidencyPolicy"]
    metadata: Metadata
    regions: tuple[PrivateRegion, ...] = ()
    groups: dict[Name, tuple[Name, ...]] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    declassifiers: tuple[Declassifier, ...] = ()
    exemptions: tuple[Exemption, ...] = ()
    defaults: Defaults = Defaults()
    tests: tuple[PolicyTest, ...] = ()


# --------------------------------------------------------------------------------------------
# Loaded policy


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy document with its source, hash and the registry it extends.

    `registry` is the base registry plus the policy's private regions; `positions` maps a
    document path to its (line, column), for reporting on a valid document (failing tests).
    """

    document: PolicyDocument
    source_yaml: str
    content_hash: str
    registry: RegionRegistry
    positions: Mapping[Path, tuple[int, int]] = field(default_factory=lambda: MappingProxyType({}))
    # Recorded in the policy history before declassifiers named their jobs: it keeps the
    # meaning it had then (see `load_policy`).
    legacy: bool = False

    @property
    def version(self) -> str:
        return self.document.metadata.version

    @property
    def name(self) -> str:
        return self.document.metadata.name

    def position(self, path: Path) -> tuple[int, int]:
        """(line, column) of `path` or of its nearest enclosing node; (0, 0) if unknown."""
        return _lookup(self.positions, path)


def check_deadline(deadline: float) -> None:
    """Refuse the document (PolicyInvalid) once checking it has used up its time budget."""
    if time.monotonic() > deadline:
        raise PolicyInvalid([PolicyError(1, 1, "", f"the policy took longer than {MAX_SECONDS:g}s to check")])


def content_hash(text: str) -> str:
    """sha256 (hex) of the policy text as UTF-8: what GetPolicy reports and SetPolicy compares."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_policy(
    text: str, registry: RegionRegistry | None = None, *, legacy: bool = False, recorded: bool = False
) -> LoadedPolicy:
    """Parses and validates a policy document.

    `registry` (default: the builtin one) is what region ids and country tokens resolve
    against; the policy's private regions are added to it. Returns a `LoadedPolicy` whose
    every token resolves and every id is unique, or raises `PolicyInvalid` with all the
    problems found.

    `legacy` is for a text the policy history recorded before declassifiers named their jobs:
    it keeps the meaning it had (a declassifier without `jobs` grants every job, and
    `defaults.undescribed_outputs` unset means `deny`), so its decisions replay unchanged. A
    policy set now is loaded without it, and must state `jobs` on every declassifier.

    `recorded` is for a text the policy history holds (`legacy` implies it): checks added
    since it was recorded are not applied, so it keeps loading (an exemption whose dataset
    pattern breaks the rules of dataset ids matches no id). A policy set now gets them all.
    """
    if len(text) > MAX_POLICY_BYTES or len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise PolicyInvalid([PolicyError(1, 1, "", f"the policy is larger than {MAX_POLICY_BYTES} bytes")])
    deadline = time.monotonic() + MAX_SECONDS
    base = registry if registry is not None else RegionRegistry.builtin()
    positions: dict[Path, tuple[int, int]] = {}
    errors: list[PolicyError] = []
    data = _parse_yaml(text, positions, errors, deadline)
    if errors:
        raise PolicyInvalid(_ordered(errors))
    document: PolicyDocument | None = None
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        errors.extend(_from_pydantic(e, positions) for e in exc.errors())
    check_deadline(deadline)
    # The meaning is checked on every part that is well-typed on its own, so one misspelt
    # key does not hide the unknown group three rules further down.
    checker = _SemanticChecker(_Parts.salvage(data), base, positions, legacy=legacy, recorded=recorded or legacy)
    checker.check()
    errors.extend(checker.errors)
    check_deadline(deadline)
    if errors or document is None:
        raise PolicyInvalid(_ordered(errors))
    return LoadedPolicy(document, text, content_hash(text), checker.registry, MappingProxyType(positions), legacy)


def policy_warnings(loaded: LoadedPolicy) -> list[PolicyError]:
    """What is valid but deserves a second look (`domicile policy check` prints these): a
    declassifier granted to every job, which lets any pipeline -- or anyone holding its
    credentials -- lift the labels it removes by claiming the transform."""
    warnings = []
    for i, declassifier in enumerate(loaded.document.declassifiers):
        for j, pattern in enumerate(declassifier.jobs or ()):
            if not pattern.strip("*/") and fnmatch.fnmatchcase("namespace/name", pattern):
                line, column = loaded.position(("declassifiers", i, "jobs", j))
                message = (
                    f"{pattern!r} grants transform {declassifier.transform!r} to every job: any pipeline "
                    "claiming it removes " + ", ".join(declassifier.removes) + "; name the approved jobs instead"
                )
                warnings.append(PolicyError(line, column, format_path(("declassifiers", i, "jobs", j)), message))
    return warnings


def _ordered(errors: list[PolicyError]) -> list[PolicyError]:
    """The report: unique errors in document order, at most MAX_ERRORS of them and then one
    saying how many more there were."""
    unique = sorted(dict.fromkeys(errors), key=lambda e: (e.line, e.column))
    report = unique[:MAX_ERRORS]
    if len(unique) > MAX_ERRORS:
        last = unique[MAX_ERRORS]
        report.append(PolicyError(last.line, last.column, "", f"and {len(unique) - MAX_ERRORS} more errors"))
    return report


def _lookup(positions: Mapping[Path, tuple[int, int]], path: Path) -> tuple[int, int]:
    for end in range(len(path), -1, -1):
        found = positions.get(path[:end])
        if found is not None:
            return found
    return (0, 0)


# --------------------------------------------------------------------------------------------
# YAML with positions


class _StringResolver(yaml.resolver.BaseResolver):
    """Resolves plain scalars to strings, except the null forms and merge keys."""


_StringResolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_StringResolver.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    # libyaml parses several times faster; it reports the same marks and errors.
    class _Loader(CParser, yaml.constructor.SafeConstructor, _StringResolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            _StringResolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class _Loader(  # type: ignore[no-redef]
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        yaml.composer.Composer,
        yaml.constructor.SafeConstructor,
        _StringResolver,
    ):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            _StringResolver.__init__(self)


def _mark(mark: yaml.Mark) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


def parse_yaml_with_positions(text: str) -> tuple[Any, dict[Path, tuple[int, int]], list[PolicyError]]:
    """YAML text -> (plain data with string scalars, positions of every path, errors).

    Shared with the decision-case runner so case files read scalars the same way.
    """
    positions: dict[Path, tuple[int, int]] = {}
    errors: list[PolicyError] = []
    data = _parse_yaml(text, positions, errors, time.monotonic() + MAX_SECONDS)
    return data, positions, errors


def _parse_yaml(text: str, positions: dict[Path, tuple[int, int]], errors: list[PolicyError], deadline: float) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            errors.append(PolicyError(1, 1, "", "empty document"))
            return None
        builder = _Builder(loader, positions, errors, deadline)
        return builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = _mark(mark) if mark is not None else (0, 0)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        errors.append(PolicyError(line, column, "", f"YAML: {problem or exc}"))
    except yaml.YAMLError as exc:
        errors.append(PolicyError(0, 0, "", f"YAML: {exc}"))
    except RecursionError:
        errors.append(PolicyError(0, 0, "", "document nested too deeply"))
    finally:
        loader.dispose()
    return None


class _OverBudget(Exception):
    pass


_NODE_KINDS = {yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list"}


class _Builder:
    """Turns a composed node tree into dicts/lists/strings, recording each path's position.

    Every node is counted where it is built -- an alias once per place it appears, keys
    included -- and checked against the deadline, before anything is built from it; a key
    that is a list or mapping is refused without being built (its expansion is the whole
    point of an alias bomb)."""

    def __init__(
        self,
        loader: _Loader,
        positions: dict[Path, tuple[int, int]],
        errors: list[PolicyError],
        deadline: float,
    ) -> None:
        self.loader = loader
        self.positions = positions
        self.errors = errors
        self.deadline = deadline
        self.count = 0
        self.characters = 0

    def build(self, node: yaml.Node, path: Path) -> Any:
        try:
            self.positions[path] = _mark(node.start_mark)
            return self._build(node, path)
        except _OverBudget as over:
            self.errors.append(PolicyError(1, 1, "", str(over)))
            return None

    def _count(self, node: yaml.Node) -> None:
        self.count += 1
        if self.count > MAX_NODES:
            raise _OverBudget(f"document too large: more than {MAX_NODES} nodes once aliases are expanded")
        if isinstance(node, yaml.ScalarNode):
            self.characters += len(node.value)
            if self.characters > MAX_CHARACTERS:
                raise _OverBudget(
                    f"document too large: more than {MAX_CHARACTERS} characters once aliases are expanded"
                )
        if self.count % 1024 == 0 and time.monotonic() > self.deadline:
            raise _OverBudget(f"the policy took longer than {MAX_SECONDS:g}s to check")

    def _build(self, node: yaml.Node, path: Path) -> Any:
        self._count(node)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                self._count(key_node)
                line, column = _mark(key_node.start_mark)
                kind = _NODE_KINDS.get(type(key_node))
                if kind is not None:
                    self.errors.append(
                        PolicyError(line, column, format_path(path), f"a key must be a string, not {kind}")
                    )
                    continue
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    self.errors.append(PolicyError(line, column, format_path(path), f"key {key!r} is not a string"))
                    continue
                if key in result:
                    self.errors.append(PolicyError(line, column, format_path((*path, key)), f"duplicate key {key!r}"))
                    continue
                self.positions[(*path, key)] = (line, column)
                result[key] = self._build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.positions[(*path, index)] = _mark(item.start_mark)
                items.append(self._build(item, (*path, index)))
            return items
        return self.loader.construct_object(node, deep=True)


def _from_pydantic(error: Mapping[str, Any], positions: Mapping[Path, tuple[int, int]]) -> PolicyError:
    loc: Path = tuple(error["loc"])
    # Union/literal validators add their own tags to `loc`; keep only what is in the document
    # (plus the key a "missing" error is about).
    known = len(loc)
    while known > 0 and loc[:known] not in positions:
        known -= 1
    kind = error["type"]
    if kind == "missing":
        path = loc[: known + 1]
        message = f"missing required key {loc[known]!r}" if known < len(loc) else "missing"
    elif kind == "extra_forbidden":
        path = loc[:known]
        message = f"unknown key {loc[-1]!r}"
    else:
        path = loc[:known]
        message = error["msg"]
    line, column = _lookup(positions, path)
    return PolicyError(line, column, format_path(path), message)


# --------------------------------------------------------------------------------------------
# Meaning


@dataclass
class _Parts:
    """The well-typed parts of a document, each list item with its index in the document."""

    regions: list[tuple[int, PrivateRegion]] = field(default_factory=list)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: list[tuple[int, Rule]] = field(default_factory=list)
    declassifiers: list[tuple[int, Declassifier]] = field(default_factory=list)
    exemptions: list[tuple[int, Exemption]] = field(default_factory=list)
    tests: list[tuple[int, PolicyTest]] = field(default_factory=list)

    @staticmethod
    def salvage(data: Any) -> _Parts:
        """Every item of `data` that validates by itself (schema errors are reported elsewhere)."""
        parts = _Parts()
        if not isinstance(data, dict):
            return parts
        for key, model in (
            ("regions", PrivateRegion),
            ("rules", Rule),
            ("declassifiers", Declassifier),
            ("exemptions", Exemption),
            ("tests", PolicyTest),
        ):
            items = data.get(key)
            if not isinstance(items, list):
                continue
            valid = getattr(parts, key)
            for index, item in enumerate(items):
                salvaged = _validate_ignoring_unknown_keys(model, item)
                if salvaged is not None:
                    valid.append((index, salvaged))
        groups = data.get("groups")
        if isinstance(groups, dict):
            for name, members in groups.items():
                try:
                    parts.groups[name] = _GROUP_MEMBERS.validate_python(members)
                except ValidationError:
                    continue
        return parts


def _validate_ignoring_unknown_keys(model: type[_Strict], item: Any) -> Any:
    """`item` as `model`, after dropping any unknown keys in it; None if still invalid."""
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        unknown = [tuple(e["loc"]) for e in exc.errors() if e["type"] == "extra_forbidden"]
        if not unknown or len(unknown) < exc.error_count():
            return None
    pruned = copy.deepcopy(item)
    for loc in unknown:
        parent = pruned
        for part in loc[:-1]:
            parent = parent[part]
        del parent[loc[-1]]
    try:
        return model.model_validate(pruned)
    except ValidationError:
        return None


_GROUP_MEMBERS: TypeAdapter[tuple[str, ...]] = TypeAdapter(tuple[Name, ...])


class _SemanticChecker:
    """Checks what the schema cannot: every token resolves, ids are unique, labels well formed."""

    def __init__(
        self,
        parts: _Parts,
        base: RegionRegistry,
        positions: Mapping[Path, tuple[int, int]],
        *,
        legacy: bool,
        recorded: bool,
    ) -> None:
        self.parts = parts
        self.legacy = legacy
        self.recorded = recorded
        self.base = base
        self.positions = positions
        self.errors: list[PolicyError] = []
        self.registry = base
        self.resolver = LocationResolver(base)
        # Groups whose own definition is broken: reported there, not again at every use.
        self.broken_groups: set[str] = set()

    def error(self, path: Path, message: str) -> None:
        line, column = _lookup(self.positions, path)
        self.errors.append(PolicyError(line, column, format_path(path), message))

    def check(self) -> None:
        self._check_regions()
        self._check_groups()
        self._check_rules()
        self._check_declassifiers()
        self._check_exemptions()
        self._check_tests()

    def _check_regions(self) -> None:
        valid: list[Region] = []
        seen: set[str] = set()
        for i, region in self.parts.regions:
            path: Path = ("regions", i)
            ok = True
            if not REGION_ID.match(region.id):
                self.error((*path, "id"), f"region id {region.id!r} is not of the form provider:name (lower case)")
                ok = False
            elif region.id in seen:
                self.error((*path, "id"), f"duplicate region id {region.id!r}")
                ok = False
            else:
                builtin = self.base.get(region.id)
                if builtin is not None and not builtin.private:
                    self.error(
                        (*path, "id"),
                        f"region {region.id!r} is a builtin region (country {builtin.country}); "
                        "a private region needs an id of its own",
                    )
                    ok = False
            if not is_country(region.country):
                self.error((*path, "country"), f"{region.country!r} is not an ISO 3166-1 alpha-2 country code")
                ok = False
            seen.add(region.id)
            if ok:
                valid.append(Region(region.id, region.country, region.display_name, True))
        self.registry = self.base.with_private(valid)

    def _check_groups(self) -> None:
        groups = self.parts.groups
        builtin = builtin_groups()
        for name, members in groups.items():
            path: Path = ("groups", name)
            if name in builtin:
                self.error(path, f"group {name!r} redefines the builtin group of that name")
                self.broken_groups.add(name)
            elif is_country(name):
                self.error(path, f"group {name!r} has the name of a country code")
                self.broken_groups.add(name)
            elif not GROUP_NAME.match(name):
                self.error(path, f"group name {name!r} must be letters, digits, '_' or '-', starting with a letter")
                self.broken_groups.add(name)
            if not members:
                self.error(path, f"group {name!r} is empty")
                self.broken_groups.add(name)
        cycles = find_group_cycles(groups)
        for component in cycles:
            self.error(("groups", component[0]), f"group cycle among {', '.join(component)}")
            self.broken_groups.update(component)
        # A resolver over the groups as written: the builtin names above are reported and
        # then still resolve to the policy's definition, which is what the author meant.
        self.resolver = LocationResolver(self.registry, groups)
        for name, members in groups.items():
            for i, member in enumerate(members):
                if self.resolver.kind(member) is None:
                    self.error(("groups", name, i), self.resolver.unknown_message(member))
                    self.broken_groups.add(name)
        # Groups reaching a broken group are broken too (their uses would fail to resolve).
        changed = True
        while changed:
            changed = False
            for name, members in groups.items():
                if name not in self.broken_groups and any(m in self.broken_groups for m in members):
                    self.broken_groups.add(name)
                    changed = True

    def _location_tokens(self, tokens: tuple[str, ...], path: Path) -> None:
        for i, token in enumerate(tokens):
            if token in self.broken_groups:
                continue
            try:
                self.resolver.resolve(token)
            except LocationError as exc:
                self.error((*path, i), str(exc))

    def _origin_tokens(self, tokens: tuple[str, ...], path: Path) -> None:
        for i, token in enumerate(tokens):
            if token in self.broken_groups:
                continue
            try:
                self.resolver.origin_countries([token])
            except LocationError as exc:
                self.error((*path, i), str(exc))

    def _labels(self, labels: tuple[str, ...], path: Path) -> None:
        for i, label in enumerate(labels):
            if not LABEL.match(label):
                self.error(
                    (*path, i),
                    f"label {label!r} is not well-formed (dotted upper-case segments such as PII.CONTACT): "
                    "it cannot match any dataset label",
                )

    def _check_rules(self) -> None:
        seen: set[str] = set()
        for i, rule in self.parts.rules:
            path: Path = ("rules", i)
            if rule.id in seen:
                self.error((*path, "id"), f"duplicate rule id {rule.id!r}")
            seen.add(rule.id)
            self._labels(rule.match.classifications, (*path, "match", "classifications"))
            self._origin_tokens(rule.match.origins, (*path, "match", "origins"))
            if rule.store is None and rule.process is None:
                self.error(path, f"rule {rule.id!r} has neither 'store' nor 'process': it would have no effect")
            for op in ("store", "process"):
                permission: Permission | None = getattr(rule, op)
                if permission is None:
                    continue
                if permission.allow is None and not permission.deny:
                    self.error((*path, op), f"'{op}' needs 'allow' or 'deny'")
                if permission.allow is not None:
                    self._location_tokens(permission.allow, (*path, op, "allow"))
                self._location_tokens(permission.deny, (*path, op, "deny"))

    def _check_declassifiers(self) -> None:
        seen: set[str] = set()
        for i, declassifier in self.parts.declassifiers:
            path: Path = ("declassifiers", i)
            if declassifier.transform in seen:
                self.error((*path, "transform"), f"duplicate declassifier for transform {declassifier.transform!r}")
            seen.add(declassifier.transform)
            self._labels(declassifier.removes, (*path, "removes"))
            if declassifier.jobs is None and not self.legacy:
                self.error(
                    path,
                    f"declassifier {declassifier.transform!r} needs 'jobs': the jobs granted this transform, as "
                    'patterns over namespace/name (e.g. ["airflow-eu/anonymize_*"]; ["*"] grants every job, [] none)',
                )

    def _check_exemptions(self) -> None:
        rule_ids = {rule.id for _, rule in self.parts.rules}
        seen: set[str] = set()
        for i, exemption in self.parts.exemptions:
            path: Path = ("exemptions", i)
            if exemption.id in seen:
                self.error((*path, "id"), f"duplicate exemption id {exemption.id!r}")
            elif exemption.id in rule_ids:
                self.error((*path, "id"), f"exemption id {exemption.id!r} is also a rule id")
            seen.add(exemption.id)
            self._location_tokens(exemption.regions, (*path, "regions"))
            # By the rules of dataset ids, which earlier releases did not have: what they
            # recorded keeps loading (its patterns are normalised when compiled).
            if not self.recorded:
                for problem in pattern_problems(exemption.dataset):
                    self.error((*path, "dataset"), f"{exemption.dataset!r} can match no dataset id: it {problem}")

    def _check_tests(self) -> None:
        seen: set[str] = set()
        for i, test in self.parts.tests:
            path: Path = ("tests", i)
            if test.name in seen:
                self.error((*path, "name"), f"duplicate test name {test.name!r}")
            seen.add(test.name)
            self._labels(test.dataset.classifications, (*path, "dataset", "classifications"))
            for j, origin in enumerate(test.dataset.origins):
                if not is_country(origin):
                    message = f"{origin!r} is not an ISO 3166-1 alpha-2 country code"
                    self.error((*path, "dataset", "origins", j), message)
            if self.resolver.kind(test.region) is not TokenKind.REGION:
                self.error((*path, "region"), f"{test.region!r} is not a known region id")
