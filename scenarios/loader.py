"""Read tap scenario files (docs/scenarios.md) into :class:`scenarios.model.Scenario` objects.

:func:`load_file` reads one YAML file, :func:`load_paths` files and folders. Each
document goes through these steps, and anything wrong stops the load with a
:class:`LoadError` that names the file, the line and the field (``file:line:
field: problem``), never a traceback:

1. **parse** with PyYAML's composer, so every node keeps its line; a mapping key is
   always read as the text written (``9F27``, ``95``), a duplicate key is an error;
2. **include**: the files named by ``include`` (relative to the file that names
   them, included files may include others, a cycle is an error) are deep-merged
   under the document in order: mappings merge key by key, lists and scalars are
   replaced, the document wins;
3. **matrix**: one document per combination of the ``matrix`` values (the cartesian
   product, in key order); ``${name}`` in a string (not in a mapping key) is replaced
   by the value's text, a string that is exactly ``${name}`` takes the value itself
   (its type too); the id gets ``[name=value,...]``; an unknown ``${name}`` is an error;
4. **normalise**: where the format wants text, a number written without quotes is
   read as written: amounts (``12.30`` stays ``"12.30"``, never a float), currency
   numbers (``826``), hex (``"9F27": 80``, ``tag: 90``, ``sw: 6985``); hex is made
   upper-case;
5. **validate** against ``scenarios/schema/scenario.schema.json`` (JSON Schema draft
   2020-12); the error that comes first in the file is reported, at the line of
   the offending node, with its JSON path as the field (``taps[0].expect.outcome``);
6. **build** the model: tags by :func:`emv.tlv.parse_tag`, hex values as bytes, card
   profiles and terminal configurations checked to exist (a value with a suffix or
   a folder, ``cards/my.yaml``, is a file, relative to the YAML file that names it,
   kept as that path; a bare word is a shipped name); every scenario, tap, fault and
   expectation keeps its :class:`~scenarios.model.Source`.

Ids must be unique across everything loaded at once; the error names both places.
A file may hold several YAML documents (``---``), one scenario (or matrix) each.
In a folder, files named ``_*.yaml`` are include fragments, not scenarios.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]
from yaml.constructor import SafeConstructor

from emv import tlv
from hce.card.profile import shipped_profiles
from scenarios.model import (
    CardSpec,
    Expectation,
    Fault,
    Scenario,
    ServerState,
    Source,
    TapSpec,
    TerminalSpec,
)
from terminal.config import shipped_configs

__all__ = ["SCHEMA_RESOURCE", "LoadError", "load_file", "load_paths", "schema"]

SCHEMA_RESOURCE = "schema/scenario.schema.json"
"""The JSON Schema, inside the ``scenarios`` package."""

_SUFFIXES = (".yaml", ".yml")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_SCALARS = (str, int, float, bool, type(None))
_LONG_ENUM = 8  # list the choices of an enum up to this many; suggest close ones beyond


class LoadError(ValueError):
    """A scenario file that cannot be loaded: the file, the 1-based line (None when the
    problem is the file itself), the field (a JSON path such as ``taps[0].amount``, or
    ``YAML``, ``include``, ``file``) and the problem in words."""

    def __init__(self, file: str, line: int | None, field: str, problem: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.problem = problem
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.problem}"


@cache
def schema() -> dict[str, Any]:
    """The scenario JSON Schema (``scenarios/schema/scenario.schema.json``)."""
    text = resources.files("scenarios").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@cache
def _validator() -> Any:
    return Draft202012Validator(schema())


# --- the public entry points ------------------------------------------------------------------


def load_file(path: str | Path) -> list[Scenario]:
    """The scenarios of one YAML file (several for a matrix or several documents), in
    order; their ids must be unique. Raises :class:`LoadError`."""
    scenarios: list[Scenario] = []
    _add_unique(scenarios, _load_one(Path(path)), {})
    return scenarios


def load_paths(paths: Iterable[str | Path]) -> list[Scenario]:
    """The scenarios of files and folders, in the order given; a folder gives its
    ``*.yaml``/``*.yml`` files, recursively, sorted by path, except ``_*`` fragments.
    A file reached twice is read once. Ids must be unique across everything.
    Raises :class:`LoadError`."""
    scenarios: list[Scenario] = []
    seen: set[Path] = set()
    ids: dict[str, Source] = {}
    for file in _files(paths):
        key = file.resolve()
        if key in seen:
            continue
        seen.add(key)
        _add_unique(scenarios, _load_one(file), ids)
    return scenarios


def _files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from sorted(
                found
                for found in path.rglob("*")
                if found.suffix in _SUFFIXES and found.is_file() and not found.name.startswith("_")
            )
        elif path.is_file():
            yield path
        else:
            raise LoadError(str(path), None, "file", "no such file or folder")


def _add_unique(into: list[Scenario], new: list[Scenario], ids: dict[str, Source]) -> None:
    for scenario in new:
        other = ids.get(scenario.id)
        if other is not None:
            raise LoadError(
                scenario.source.file,
                scenario.source.line,
                "id",
                f"duplicate id {scenario.id!r}: also at {other}",
            )
        ids[scenario.id] = scenario.source
        into.append(scenario)


def _load_one(path: Path) -> list[Scenario]:
    file = str(path)
    documents = _parse(path, file)
    if not documents:
        raise LoadError(file, None, "file", "no YAML document in the file")
    scenarios: list[Scenario] = []
    for document in documents:
        merged = _with_includes(document, path, (path.resolve(),), (file,))
        for combination, expanded in _expand(merged):
            _normalise(expanded)
            _validate(expanded, combination)
            scenarios.append(_Builder(combination).scenario(expanded))
    return scenarios


# --- YAML nodes that remember where they were written -----------------------------------------


@dataclass
class _Node:
    """A YAML value with its place: ``value`` is a dict of nodes (mapping), a list of
    nodes (sequence) or a scalar; ``raw`` is a scalar as written; ``keys`` are the
    places of a mapping's keys."""

    value: Any
    source: Source
    raw: str | None = None
    keys: dict[str, Source] = field(default_factory=dict)

    def get(self, name: str) -> _Node | None:
        """A mapping's value by key (None: absent, or not a mapping)."""
        return self.value.get(name) if isinstance(self.value, dict) else None


def _data(node: _Node) -> Any:
    """The plain Python value (what JSON Schema validates)."""
    if isinstance(node.value, dict):
        return {key: _data(child) for key, child in node.value.items()}
    if isinstance(node.value, list):
        return [_data(child) for child in node.value]
    return node.value


def _field(path: Iterable[str | int]) -> str:
    """A JSON path as the error's field: ``taps[0].expect.outcome`` (``document`` for the root)."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text or "document"


def _parse(path: Path, file: str) -> list[_Node]:
    """The documents of a YAML file as nodes."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise LoadError(file, None, "file", f"cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise LoadError(file, None, "file", "not UTF-8 text") from None
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.CSafeLoader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or "not valid YAML"
        if err.context:
            problem = f"{problem} ({err.context})"
        raise LoadError(file, mark.line + 1 if mark else None, "YAML", problem) from None
    except yaml.YAMLError as err:
        raise LoadError(file, None, "YAML", str(err)) from None
    reader = _NodeReader(file)
    return [reader.read(document, ()) for document in documents if document is not None]


class _NodeReader:
    """YAML nodes -> :class:`_Node`: scalars through PyYAML's safe constructor (a value
    that is not a JSON scalar, e.g. a date, is kept as its text), keys as written."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.constructor = SafeConstructor()
        self.reading: set[int] = set()

    def source(self, node: yaml.Node) -> Source:
        return Source(self.file, node.start_mark.line + 1)

    def read(self, node: yaml.Node, path: tuple[str | int, ...]) -> _Node:
        if id(node) in self.reading:
            raise LoadError(self.file, self.source(node).line, _field(path), "recursive alias")
        self.reading.add(id(node))
        try:
            return self._read(node, path)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err)
            raise LoadError(self.file, self.source(node).line, _field(path), problem) from None
        finally:
            self.reading.discard(id(node))

    def _read(self, node: yaml.Node, path: tuple[str | int, ...]) -> _Node:
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)  # YAML merge keys ("<<")
            values: dict[str, _Node] = {}
            keys: dict[str, Source] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise LoadError(
                        self.file, self.source(key_node).line, _field(path), "a key must be a word"
                    )
                key = str(key_node.value)
                if key in keys:
                    raise LoadError(
                        self.file,
                        self.source(key_node).line,
                        _field((*path, key)),
                        f"duplicate key (also at line {keys[key].line})",
                    )
                keys[key] = self.source(key_node)
                values[key] = self.read(value_node, (*path, key))
            return _Node(values, self.source(node), keys=keys)
        if isinstance(node, yaml.SequenceNode):
            items = [self.read(item, (*path, index)) for index, item in enumerate(node.value)]
            return _Node(items, self.source(node))
        raw = str(node.value)
        value = self.constructor.construct_object(node)
        if not isinstance(value, _SCALARS):
            value = raw
        return _Node(value, self.source(node), raw=raw)


# --- include ------------------------------------------------------------------------------


def _with_includes(
    document: _Node, path: Path, stack: tuple[Path, ...], names: tuple[str, ...]
) -> _Node:
    """The document with its ``include`` files merged under it (module docstring, step 2);
    ``stack`` holds the files being included (resolved) to find cycles, ``names`` the
    same as written, for the message."""
    include = document.get("include")
    if include is None:
        return document
    items = include.value if isinstance(include.value, list) else [include]
    base: _Node | None = None
    for index, item in enumerate(items):
        where = "include" if item is include else f"include[{index}]"
        if not isinstance(item.value, str) or not item.value:
            raise LoadError(item.source.file, item.source.line, where, "expected a file name")
        target = Path(os.path.normpath(Path(item.source.file).parent / item.value))
        resolved = target.resolve()
        if resolved in stack:
            cycle = " -> ".join((*names[stack.index(resolved) :], str(target)))
            raise LoadError(item.source.file, item.source.line, where, f"include cycle: {cycle}")
        if not target.is_file():
            raise LoadError(item.source.file, item.source.line, where, f"no such file: {target}")
        fragments = _parse(target, str(target))
        if len(fragments) > 1:
            raise LoadError(str(target), None, "file", "an included file holds one YAML document")
        fragment = fragments[0] if fragments else _Node({}, Source(str(target), 1))
        if fragment.value is None:
            fragment = _Node({}, fragment.source)
        if not isinstance(fragment.value, dict):
            raise LoadError(
                str(target), fragment.source.line, "document", "an included file must be a mapping"
            )
        fragment = _with_includes(fragment, target, (*stack, resolved), (*names, str(target)))
        base = fragment if base is None else _merge(base, fragment)
    own = _Node(
        {key: value for key, value in document.value.items() if key != "include"},
        document.source,
        keys={key: where for key, where in document.keys.items() if key != "include"},
    )
    return own if base is None else _merge(base, own)


def _merge(base: _Node, over: _Node) -> _Node:
    """``over`` deep-merged onto ``base``: mappings merge, anything else is replaced."""
    if not (isinstance(base.value, dict) and isinstance(over.value, dict)):
        return over
    values = dict(base.value)
    for key, child in over.value.items():
        values[key] = _merge(values[key], child) if key in values else child
    return _Node(values, over.source, keys={**base.keys, **over.keys})


# --- matrix -------------------------------------------------------------------------------


def _expand(document: _Node) -> Iterator[tuple[str, _Node]]:
    """Each matrix combination (its id suffix, "" without a matrix) with its document."""
    matrix = document.get("matrix")
    if matrix is None:
        yield "", _substitute(document, {}, (), None)
        return
    _validate(document, "", only=("matrix",))
    names = list(matrix.value)
    for values in itertools.product(*(matrix.value[name].value for name in names)):
        bound = dict(zip(names, values, strict=True))
        suffix = "[" + ",".join(f"{name}={_text(value)}" for name, value in bound.items()) + "]"
        yield suffix, _substitute(document, bound, (), matrix)


def _text(node: _Node) -> str:
    """A matrix value as text (in ids and inside longer strings)."""
    value = node.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return node.raw if node.raw is not None else repr(value)
    if isinstance(value, dict | list):
        return json.dumps(_data(node), separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _substitute(
    node: _Node, bound: dict[str, _Node], path: tuple[str | int, ...], matrix: _Node | None
) -> _Node:
    """A copy of ``node`` with ``${name}`` replaced in its strings (the matrix itself aside)."""
    if isinstance(node.value, dict):
        values = {
            key: child
            if (not path and key == "matrix")
            else _substitute(child, bound, (*path, key), matrix)
            for key, child in node.value.items()
        }
        return _Node(values, node.source, keys=node.keys)
    if isinstance(node.value, list):
        items = [
            _substitute(child, bound, (*path, index), matrix)
            for index, child in enumerate(node.value)
        ]
        return _Node(items, node.source)
    if not isinstance(node.value, str) or "${" not in node.value:
        return _Node(node.value, node.source, raw=node.raw)  # a copy: normalising changes it
    for name in _VARIABLE.findall(node.value):
        if name not in bound:
            known = f"the matrix defines: {', '.join(bound)}" if matrix else "no matrix"
            raise LoadError(
                node.source.file,
                node.source.line,
                _field(path),
                f"unknown ${{{name}}} ({known})",
            )
    whole = _VARIABLE.fullmatch(node.value)
    if whole is not None:
        value = bound[whole.group(1)]
        return _relocated(value, node.source)
    text = _VARIABLE.sub(lambda match: _text(bound[match.group(1)]), node.value)
    return _Node(text, node.source, raw=text)


def _relocated(node: _Node, source: Source) -> _Node:
    """A copy of a matrix value placed where its ``${name}`` was written (the lines
    inside it stay its own)."""
    return _Node(_copy(node).value, source, raw=node.raw, keys=dict(node.keys))


def _copy(node: _Node) -> _Node:
    """A deep copy of ``node`` (normalising changes nodes in place)."""
    if isinstance(node.value, dict):
        values = {key: _copy(child) for key, child in node.value.items()}
        return _Node(values, node.source, keys=dict(node.keys))
    if isinstance(node.value, list):
        return _Node([_copy(child) for child in node.value], node.source)
    return _Node(node.value, node.source, raw=node.raw)


# --- normalise: text written as numbers ---------------------------------------------------


def _as_text(node: _Node | None, *, upper: bool = False) -> None:
    """A number written without quotes becomes its text as written; hex upper-case."""
    if node is None:
        return
    if isinstance(node.value, int | float) and not isinstance(node.value, bool):
        node.value = node.raw if node.raw is not None else str(node.value)
    if upper and isinstance(node.value, str):
        node.value = node.value.upper()


def _normalise(document: _Node) -> None:
    """Module docstring, step 4 (the nodes are this combination's own copies)."""
    taps = document.get("taps")
    if taps is None or not isinstance(taps.value, list):
        return
    for index, tap in enumerate(taps.value):
        if not isinstance(tap.value, dict):
            continue
        for name in ("amount", "amount_other", "currency"):
            _as_text(tap.get(name), upper=name == "currency")
        expect = tap.get("expect")
        tags = expect.get("tags") if expect is not None else None
        if tags is not None and isinstance(tags.value, dict):
            _upper_keys(tags, f"taps[{index}].expect.tags")
            for value in tags.value.values():
                _as_text(value, upper=True)
        faults = tap.get("faults")
        for fault in faults.value if faults is not None and isinstance(faults.value, list) else []:
            for kind in ("corrupt", "flip_signature"):
                params = fault.get(kind)
                for name in ("tag", "xor", "sw"):
                    _as_text(params.get(name) if params is not None else None, upper=True)


def _upper_keys(mapping: _Node, at: str) -> None:
    """Upper-case a mapping's keys (hex tags); two keys that then agree are an error."""
    values: dict[str, _Node] = {}
    keys: dict[str, Source] = {}
    for key, child in mapping.value.items():
        upper = key.upper()
        if upper in values:
            raise LoadError(
                mapping.keys[key].file,
                mapping.keys[key].line,
                f"{at}.{key}",
                f"the same tag as {upper!r} (line {keys[upper].line})",
            )
        values[upper] = child
        keys[upper] = mapping.keys[key]
    mapping.value = values
    mapping.keys = keys


# --- validation against the JSON Schema ---------------------------------------------------


def _validate(document: _Node, combination: str, *, only: tuple[str, ...] = ()) -> None:
    """Raise the first schema error (in file order) as a :class:`LoadError`; ``only``
    limits the check to errors under that path (the matrix, before expanding it)."""
    errors = [
        error
        for error in _validator().iter_errors(_data(document))
        if tuple(error.absolute_path)[: len(only)] == only
    ]
    if not errors:
        return
    explained = sorted(
        (_explain(document, error) for error in errors),
        key=lambda found: (
            found[0].file != document.source.file,
            found[0].line,
            _order(document, found[1]),
        ),
    )
    source, steps, problem = explained[0]
    if combination:
        problem += f" (matrix combination {combination})"
    raise LoadError(source.file, source.line, _field(steps), problem)


def _order(document: _Node, steps: list[str | int]) -> list[int]:
    """Where a path comes in the document (pre-order), for errors on one line."""
    order: list[int] = []
    node: _Node | None = document
    for step in steps:
        if node is None:
            break
        if isinstance(node.value, dict):
            order.append(list(node.value).index(step) if step in node.value else len(node.value))
        elif isinstance(step, int):
            order.append(step)
        node = _child(node, step)
    return order


def _locate(document: _Node, path: Iterable[str | int]) -> tuple[_Node, list[str | int]]:
    """The deepest node along ``path`` and the steps that reached it."""
    node = document
    steps: list[str | int] = []
    for step in path:
        child = _child(node, step)
        if child is None:
            break
        node = child
        steps.append(step)
    return node, steps


def _child(node: _Node, step: str | int) -> _Node | None:
    """A mapping's value or a sequence's item, None when there is none."""
    if isinstance(node.value, dict) and isinstance(step, str):
        found: _Node | None = node.value.get(step)
        return found
    if isinstance(node.value, list) and isinstance(step, int) and 0 <= step < len(node.value):
        item: _Node = node.value[step]
        return item
    return None


def _explain(document: _Node, error: Any) -> tuple[Source, list[str | int], str]:
    """Where a schema error is (the YAML line), its path, and the problem in words."""
    error = _deepest(error)
    node, steps = _locate(document, error.absolute_path)
    schema_here: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    validator, instance = error.validator, error.instance
    if "propertyNames" in error.schema_path and isinstance(node.value, dict):
        key = str(instance)
        return node.keys.get(key, node.source), [*steps, key], _problem(error)
    if validator == "additionalProperties" and isinstance(node.value, dict):
        allowed = list(schema_here.get("properties", {}))
        unknown = [key for key in node.value if key not in allowed]
        if unknown:
            key = unknown[0]
            problem = f"unknown key (expected one of: {', '.join(allowed)})"
            return node.keys.get(key, node.source), [*steps, key], problem
    if validator == "required" and isinstance(instance, dict):
        missing = [key for key in schema_here.get("required", []) if key not in instance]
        if missing:
            return node.source, [*steps, missing[0]], "missing (required)"
    return node.source, steps, _problem(error)


def _deepest(error: Any) -> Any:
    """For anyOf/oneOf: the error inside the one alternative whose type fits, if any
    (the most specific one: deepest, an unknown key before a missing one)."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict[Any, list[Any]] = {}
        for inner in error.context:
            branches.setdefault(inner.relative_schema_path[0], []).append(inner)
        fitting = [
            inner
            for inner in branches.values()
            if not any(e.validator == "type" and not e.relative_path for e in inner)
        ]
        if len(fitting) != 1:
            return error
        error = min(fitting[0], key=lambda e: (-len(e.relative_path), e.validator == "required"))
    return error


_TYPE_WORDS = {
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "nothing",
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing"


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(error: Any) -> str:
    """A schema error in words."""
    schema_here: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    validator, expected, instance = error.validator, error.validator_value, error.instance
    if validator in ("anyOf", "oneOf", "minProperties", "maxProperties") and (
        "errorMessage" in schema_here
    ):
        return str(schema_here["errorMessage"])
    if validator == "type":
        wanted = [expected] if isinstance(expected, str) else list(expected)
        words = " or ".join(_TYPE_WORDS.get(kind, kind) for kind in wanted)
        return f"{_show(instance)} is {_kind(instance)}, expected {words}"
    if validator == "enum":
        choices = [str(choice) for choice in expected]
        if len(choices) <= _LONG_ENUM:
            return f"{_show(instance)} is not one of: {', '.join(choices)}"
        close = difflib.get_close_matches(str(instance), choices, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else " (the schema lists them)"
        return f"{_show(instance)} is not an allowed value{hint}"
    if validator == "pattern":
        wanted = schema_here.get("patternErrorMessage", f"matching {expected}")
        return f"{_show(instance)} is not {wanted}"
    if validator in ("minItems", "minLength") and expected == 1:
        return "must not be empty"
    if validator == "minimum":
        return f"{_show(instance)} is below the minimum {expected}"
    if validator == "uniqueItems":
        return f"{_show(instance)} has an item twice"
    if validator == "dependentRequired":
        for name, needs in dict(expected).items():
            missing = [need for need in needs if name in instance and need not in instance]
            if missing:
                return f"{name} needs {', '.join(missing)}"
    return str(error.message)


# --- building the model -------------------------------------------------------------------


class _Builder:
    """A validated document -> :class:`Scenario` (module docstring, step 6)."""

    def __init__(self, combination: str) -> None:
        self.combination = combination

    def fail(self, node: _Node, where: str, problem: str) -> LoadError:
        if self.combination:
            problem += f" (matrix combination {self.combination})"
        return LoadError(node.source.file, node.source.line, where, problem)

    def scenario(self, document: _Node) -> Scenario:
        values: dict[str, _Node] = document.value
        taps = tuple(self.tap(tap, index) for index, tap in enumerate(values["taps"].value))
        server = values.get("server")
        tags = values.get("tags")
        return Scenario(
            id=values["id"].value + self.combination,
            title=values["title"].value,
            requirement=values["requirement"].value,
            card=self.card(values["card"]),
            taps=taps,
            source=document.source,
            terminal=self.terminal(values.get("terminal")),
            host=values["host"].value if "host" in values else "inprocess",
            server=ServerState(**_data(server)) if server is not None else ServerState(),
            tags=tuple(_data(tags)) if tags is not None else (),
        )

    def card(self, node: _Node) -> CardSpec:
        if isinstance(node.value, str):
            return CardSpec(self.named(node, "card", "card profile"))
        profile = node.value["profile"]
        overrides = node.get("overrides")
        return CardSpec(
            self.named(profile, "card.profile", "card profile"),
            _data(overrides) if overrides is not None else {},
        )

    def terminal(self, node: _Node | None) -> TerminalSpec:
        if node is None:
            return TerminalSpec()
        if isinstance(node.value, str):
            return TerminalSpec(self.named(node, "terminal", "terminal configuration"))
        config = node.get("config")
        overrides = node.get("overrides")
        return TerminalSpec(
            self.named(config, "terminal.config", "terminal configuration")
            if config is not None
            else "default",
            _data(overrides) if overrides is not None else {},
        )

    def named(self, node: _Node, where: str, what: str) -> str:
        """A shipped name, checked; or a file, relative to the YAML that names it."""
        value: str = node.value
        path = Path(value)
        if path.suffix or path.name != value:
            if not path.is_absolute():
                path = Path(os.path.normpath(Path(node.source.file).parent / path))
            if not path.is_file():
                raise self.fail(node, where, f"no such {what} file: {path}")
            return str(path)
        shipped = (
            [path.stem for path in shipped_profiles()]
            if what == "card profile"
            else shipped_configs()
        )
        if value not in shipped:
            raise self.fail(
                node, where, f"no shipped {what} {value!r} (shipped: {', '.join(shipped)})"
            )
        return value

    def tap(self, node: _Node, index: int) -> TapSpec:
        at = f"taps[{index}]"
        faults = node.get("faults")
        expect = node.get("expect")
        currency = node.get("currency")
        return TapSpec(
            amount=self.amount(node.value["amount"], f"{at}.amount"),
            source=node.source,
            amount_other=self.amount(node.get("amount_other"), f"{at}.amount_other"),
            currency=currency.value if currency is not None else None,
            type=node.value["type"].value if "type" in node.value else "purchase",
            faults=tuple(self.fault(fault) for fault in faults.value) if faults else (),
            expect=self.expectation(expect, f"{at}.expect") if expect else Expectation(),
            repeat=node.value["repeat"].value if "repeat" in node.value else 1,
        )

    def amount(self, node: _Node | None, where: str) -> str:
        """Decimal text as written ("12.30" stays so), checked by :class:`decimal.Decimal`."""
        if node is None:
            return "0"
        text = str(node.value)
        try:
            Decimal(text)
        except InvalidOperation:
            raise self.fail(node, where, f"{text!r} is not a decimal amount") from None
        return text

    def fault(self, node: _Node) -> Fault:
        ((kind, value),) = node.value.items()
        params = _data(value) if isinstance(value.value, dict) else {"value": value.value}
        return Fault(kind, params, node.source)

    def expectation(self, node: _Node, at: str) -> Expectation:
        values: dict[str, _Node] = node.value
        plain: dict[str, Any] = {
            name: values[name].value
            for name in ("outcome", "kernel", "path", "cvm", "oda", "cryptogram", "online")
            if name in values
        }
        sources = {name: values[name].source for name in values if name not in ("host", "tvr")}
        host = values.get("host")
        for name, child in host.value.items() if host is not None else ():
            plain[f"host_{name}"] = child.value
            sources[f"host.{name}"] = child.source
        tvr = values.get("tvr")
        tvr_set = tuple(_data(tvr.value["set"])) if tvr and "set" in tvr.value else ()
        tvr_clear = tuple(_data(tvr.value["clear"])) if tvr and "clear" in tvr.value else ()
        both = sorted(set(tvr_set) & set(tvr_clear))
        if tvr is not None:
            if both:
                raise self.fail(tvr, f"{at}.tvr", f"{', '.join(both)}: both set and clear")
            sources["tvr"] = tvr.source
        tags: dict[int, bytes] = {}
        tags_node = values.get("tags")
        if tags_node is not None:
            del sources["tags"]
            for key, value in tags_node.value.items():
                tag = self.tag(tags_node, key, f"{at}.tags.{key}")
                tags[tag] = bytes.fromhex(value.value)
                sources[f"tags.{tlv.tag_hex(tag)}"] = value.source
        sequences: dict[str, Any] = {
            name: tuple(_data(values[name])) for name in ("apdus", "ui") if name in values
        }
        return Expectation(
            **plain,
            tvr_set=tvr_set,
            tvr_clear=tvr_clear,
            tags=tags,
            **sequences,
            taps=values["taps"].value if "taps" in values else None,
            reason=values["reason"].value if "reason" in values else None,
            sources=sources,
        )

    def tag(self, mapping: _Node, key: str, where: str) -> int:
        """A tag key, well formed (:func:`emv.tlv.parse_tag`)."""
        try:
            return tlv.parse_tag(key)
        except (ValueError, tlv.TlvError) as err:
            source = mapping.keys.get(key, mapping.source)
            raise self.fail(_Node(key, source), where, f"not a well-formed tag: {err}") from None
