"""Load a YAML document into a validated model, reporting every problem at once.

Contract: :func:`load_spec` / :func:`parse_spec` return a :class:`~hacloud.spec.model.Spec` or raise
:class:`~hacloud.errors.SpecError` whose ``problems`` hold every schema error and every
cross-field error found, each with its path in the document, its line, what is wrong and how
to fix it. They never raise anything else for bad input (malformed YAML, wrong types, unknown
or duplicate keys).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from hacloud.errors import Problem, SpecError
from hacloud.spec.model import Spec

PathElem = str | int


# ---------------------------------------------------------------- YAML with positions


#: Deepest nesting a document may have. A spec is about 6 levels deep; PyYAML's composer and
#: pydantic recurse per level, so thousands of levels end in RecursionError.
MAX_DEPTH = 64
#: Most nodes a document may expand to once aliases are followed. A full spec is a few hundred;
#: each alias of an alias multiplies (the "billion laughs"), and validation walks the expansion.
MAX_NODES = 20_000


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    return Problem(
        "",
        f"not valid YAML: {problem}",
        "fix the YAML syntax at that line (indentation, a missing ':' or an unclosed quote)",
        line,
    )


def _too_deep(text: str) -> Problem | None:
    """Nesting deeper than MAX_DEPTH, found from the parser's events (an iterative pass, so any
    depth costs only time linear in the text), before the recursive composer runs."""
    depth = 0
    # libyaml's parser when PyYAML has it: the pure-Python scanner looks ahead up to 1024
    # characters per possible key, which makes a line of 5000 '[' cost half a second.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    too_deep = Problem(
        "",
        f"nested more than {MAX_DEPTH} levels deep",
        "a spec or inventory is a few levels deep: remove the extra nesting",
    )
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    return dataclasses.replace(too_deep, line=mark.line + 1 if mark is not None else None)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        if "nesting depth" not in str(exc):  # libyaml's own limit (1000), met while scanning ahead
            raise
        mark = getattr(exc, "problem_mark", None)
        return dataclasses.replace(too_deep, line=mark.line + 1 if mark is not None else None)
    return None


def _expansion(root: yaml.Node) -> Problem | None:
    """A recursive alias, or aliases expanding to more than MAX_NODES nodes. The composer gives
    an alias the very node object it names, so the tree is a graph: count each node's expanded
    size once (memoised by identity), iteratively, and find cycles on the way."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        kids = _children(node)
        if children_done:
            on_path.discard(key)
            size[key] = min(MAX_NODES + 1, 1 + sum(size[id(k)] for k in kids))
            if size[key] > MAX_NODES:
                return Problem(
                    "",
                    f"aliases expand to more than {MAX_NODES} values",
                    "write the values out, or use fewer aliases of aliases",
                    node.start_mark.line + 1,
                )
            continue
        if key in size:
            continue
        if key in on_path:
            return Problem(
                "",
                "an alias refers to a value that contains it (a recursive alias)",
                "replace the alias (*name) inside its own anchor (&name) with the values it should hold",
                node.start_mark.line + 1,
            )
        on_path.add(key)
        stack.append((node, True))
        for kid in kids:
            if id(kid) in on_path:
                return Problem(
                    "",
                    "an alias refers to a value that contains it (a recursive alias)",
                    "replace the alias (*name) inside its own anchor (&name) with the values it should hold",
                    kid.start_mark.line + 1,
                )
            if id(kid) not in size:
                stack.append((kid, False))
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _compose(text: str, filename: str) -> tuple[Any, yaml.Node | None, list[Problem]]:
    """Parse YAML; return (data, node tree, problems). Data is None when it cannot be parsed.

    Safe on hostile text: nesting, recursive aliases and alias bombs are problems found before
    anything recursive or expanding runs, in time linear in the text."""
    try:
        deep = _too_deep(text)
        if deep is not None:
            return None, None, [deep]
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            bomb = _expansion(node)
            if bomb is not None:
                return None, None, [bomb]
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return None, None, [_yaml_problem(exc)]
    problems = list(_duplicate_keys(node, []))
    return data, node, problems


def _duplicate_keys(node: yaml.Node | None, path: list[PathElem]) -> Iterable[Problem]:
    # PyYAML keeps the last of two equal keys silently; a spec must never mean two things.
    # Each node is checked once: an alias names a node already checked where it was anchored.
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node | None, list[PathElem]]] = [(node, path)]
    while stack:
        current, where = stack.pop()
        if current is None or id(current) in seen_nodes:
            continue
        seen_nodes.add(id(current))
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in current.value:
                key = str(key_node.value)
                if key in seen:
                    yield Problem(
                        format_path([*where, key]),
                        f"duplicate key (first defined on line {seen[key]})",
                        "keep one of the two definitions",
                        key_node.start_mark.line + 1,
                    )
                else:
                    seen[key] = key_node.start_mark.line + 1
                stack.append((value_node, [*where, key]))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, [*where, index]) for index, item in enumerate(current.value))


def line_of(node: yaml.Node | None, path: Iterable[PathElem]) -> int | None:
    """The line of the deepest node along ``path`` (a missing key points at its parent)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for elem in path:
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(elem, str):
            for key_node, value_node in node.value:
                if str(key_node.value) == elem:
                    nxt = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(elem, int) and 0 <= elem < len(node.value):
            nxt = node.value[elem]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        node = nxt
    return line


def format_path(path: Iterable[PathElem]) -> str:
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            out += f".{elem}" if out else str(elem)
    return out


# ---------------------------------------------------------------- pydantic errors -> problems


def _strip(tp: Any) -> Any:
    """Remove Annotated wrappers and a trailing ``| None``."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _strip(args[0])
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _dataclass_fields(tp: Any) -> dict[str, Any] | None:
    """Field name -> annotation of a (stdlib) dataclass, or None for anything else."""
    if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return None
    return typing.get_type_hints(tp)


def _kind_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    return str(args[0]) if typing.get_origin(field.annotation) is Literal and args else None


def _walk(root: Any, loc: tuple[PathElem, ...]) -> tuple[list[PathElem], list[str], FieldInfo | None]:
    """Map a pydantic ``loc`` to the user's path, dropping union tags.

    Returns (path, the valid keys where the last key sits, FieldInfo of the last key or None).
    """
    cur: Any = root
    path: list[PathElem] = []
    owner: list[str] = []
    info: FieldInfo | None = None
    for elem in loc:
        tp = _strip(cur)
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            members = [_strip(a) for a in typing.get_args(tp)]
            tagged = {_kind_of(m): m for m in members if _is_model(m)}
            if elem in tagged:
                cur = tagged[elem]
                continue
            if not tagged and isinstance(elem, str):
                # a plain scalar union (int | str ...): pydantic names the member; drop it.
                continue
        dc_fields = _dataclass_fields(tp)
        if _is_model(tp):
            path.append(elem)
            owner = sorted(tp.model_fields)
            info = tp.model_fields.get(str(elem))
            cur = info.annotation if info is not None else None
        elif dc_fields is not None:
            path.append(elem)
            owner = sorted(k for k in dc_fields if not k.startswith("__"))
            info = None
            cur = dc_fields.get(str(elem))
        elif typing.get_origin(tp) is list:
            path.append(elem)
            cur = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is tuple:
            path.append(elem)
            args = [a for a in typing.get_args(tp) if a is not Ellipsis]
            cur = args[elem] if isinstance(elem, int) and elem < len(args) else args[0]
        elif typing.get_origin(tp) is dict:
            path.append(elem)
            cur = typing.get_args(tp)[1]
        else:
            path.append(elem)
            cur = None
    return path, owner, info


_LIST_FIXES = {
    "fencing": "write a list of methods, e.g. `fencing:` then `  - kind: fence_ipmilan`",
    "nodes": "hacloud builds two-node pairs: list exactly two nodes",
}


def _remedy(err: Any, path: list[PathElem], owner: list[str], info: FieldInfo | None) -> str:
    kind = err["type"]
    last = str(path[-1]) if path else ""
    desc = info.description if info is not None and info.description else ""
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"add `{last}:` ({desc})" if desc else f"add `{last}:`"
    if kind == "extra_forbidden":
        valid = owner
        close = difflib.get_close_matches(last, valid, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return f"{hint}remove `{last}`; valid keys here: {', '.join(valid)}"
    if kind == "union_tag_invalid":
        return f"set kind to one of: {ctx.get('expected_tags', '')}"
    if kind == "union_tag_not_found":
        return "add `kind:` naming which variant this is (see `hacloud schema`)"
    if kind == "literal_error":
        return f"use one of: {ctx.get('expected', '')}"
    if kind in ("too_short", "too_long") and last in _LIST_FIXES:
        return _LIST_FIXES[last]
    if kind in ("list_type",) and last in _LIST_FIXES:
        return _LIST_FIXES[last]
    if desc:
        return f"expected {desc}"
    return "see `hacloud schema` for what this field takes"


def problems_from_validation(
    exc: ValidationError, model: Any, node: yaml.Node | None, list_keys: bool = False
) -> list[Problem]:
    """One problem per path; ``list_keys``: a missing key's remedy also lists the valid keys there."""
    out: dict[str, Problem] = {}
    for err in exc.errors():
        path, owner, info = _walk(model, tuple(err["loc"]))
        key = format_path(path)
        message = str(err["msg"])
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] != "missing" and isinstance(err.get("input"), str | int | float | bool):
            message += f" (got {err['input']!r})"
        if key in out:
            # scalar unions report once per member; one line per path is enough.
            continue
        remedy = _remedy(err, path, owner, info)
        if list_keys and err["type"] == "missing" and owner:
            remedy += f"; valid keys here: {', '.join(owner)}"
        out[key] = Problem(key, message, remedy, line_of(node, path))
    return list(out.values())


# ---------------------------------------------------------------- entry points


def parse_document(
    text: str,
    filename: str,
    model: Any,
    cross: typing.Callable[..., list[tuple[list[PathElem], str, str]]] | None = None,
) -> Any:
    """Validate ``text`` (YAML or JSON) as ``model`` (a pydantic model class or a dataclass);
    raise SpecError with every problem."""
    data, node, problems = _compose(text, filename)
    if data is None and not problems:
        problems.append(Problem("", "the file is empty", "start from `hacloud init`", None))
    if problems and data is None:
        raise SpecError(filename, problems, code="HAC205")
    if not isinstance(data, dict):
        raise SpecError(
            filename,
            [
                *problems,
                Problem(
                    "",
                    f"the document must be a mapping, not {type(data).__name__}",
                    "start from `hacloud init`, which writes a valid example",
                    1,
                ),
            ],
            code="HAC206",
        )
    result: Any = None
    try:
        result = model.model_validate(data) if _is_model(model) else TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        problems += problems_from_validation(exc, model, node)
    if cross is not None:
        seen = {p.path for p in problems}
        for path, message, remedy in cross(data, strict=result is not None):
            key = format_path(path)
            if key not in seen:
                problems.append(Problem(key, message, remedy, line_of(node, path)))
    if problems or result is None:
        problems.sort(key=lambda p: (p.line or 0, p.path))
        raise SpecError(filename, problems, code="HAC207")
    return result


def parse_spec(text: str, filename: str = "hacloud.yaml") -> Spec:
    from hacloud.spec.rules import cross_problems

    spec: Spec = parse_document(text, filename, Spec, cross_problems)
    return spec


def load_spec(path: Path) -> Spec:
    """Read and validate the spec at ``path``; a missing file is a SpecError with a remedy."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            str(path),
            [
                Problem(
                    "",
                    "no such file",
                    f"create one with `hacloud init --provider lab --out {path}` or pass -f/--spec",
                )
            ],
            code="HAC208",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(
            str(path),
            [Problem("", f"cannot read the file: {exc}", "check the path and that it is UTF-8 text")],
            code="HAC209",
        ) from None
    return parse_spec(text, str(path))
