"""Untrusted JSON and YAML documents parsed within bounds (depth, values, number size, Unicode),
every refusal naming where in the document it is."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

MAX_DEPTH = 32  # a spec nests 4 levels; a table or a correlate body 3
MAX_NODES = 200_000  # bounds the work a document of aliases (a "YAML bomb") can cause
MAX_DIGITS = 30  # an integer longer than this is no count, size or seed any field takes
MAX_NUMBER_CHARS = 64  # a YAML number scalar longer than this is refused before int()/float()

Loc = tuple[str | int, ...]


class DocumentError(ValueError):
    """A document that cannot be accepted: ``loc`` is the path to the offending value."""

    def __init__(self, loc: Loc, msg: str, kind: str = "value_error") -> None:
        self.loc, self.msg, self.kind = loc, msg, kind
        where = ".".join(str(p) for p in loc) or "(document)"
        super().__init__(f"{where}: {msg}")


@dataclass(frozen=True)
class _Refused:
    """A number the parser met but did not convert (too long, or not finite)."""

    text: str
    why: str


def _line_col(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    return f"line {line}, column {pos - (text.rfind(chr(10), 0, pos) + 1) + 1}"


# ----- JSON --------------------------------------------------------------------------------

# A string token (an unterminated one runs to the end: linear on any input) or a structural
# character; the scan only tracks nesting, json.loads judges the syntax afterwards.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[\[\]{}:,]', re.S)


def _json_key(token: str) -> str:
    try:
        key = json.loads(token)
    except ValueError:
        return token.strip('"')
    return key if isinstance(key, str) else token


def _check_json_depth(text: str, max_depth: int, root: Loc) -> None:
    # per open container: [is_object, current key or index, expecting a key]
    stack: list[list[Any]] = []
    for m in _JSON_TOKEN.finditer(text):
        t = m.group()
        c = t[0]
        if c in "[{":
            if len(stack) >= max_depth:
                raise DocumentError((*root, *(lvl[1] for lvl in stack)),
                                    f"nested deeper than {max_depth} levels "
                                    f"({_line_col(text, m.start())})", "too_deep")
            stack.append([c == "{", None if c == "{" else 0, c == "{"])
        elif c in "]}":
            if stack:
                stack.pop()
        elif not stack:
            continue
        elif c == ",":
            top = stack[-1]
            if top[0]:
                top[2] = True
            else:
                top[1] += 1
        elif c == ":":
            stack[-1][2] = False
        elif c == '"' and stack[-1][0] and stack[-1][2]:
            stack[-1][1] = _json_key(t)


def _json_int(s: str) -> int | _Refused:
    digits = len(s.lstrip("-"))
    if digits > MAX_DIGITS:
        return _Refused(s[:12] + "…", f"an integer of {digits} digits; at most {MAX_DIGITS} "
                        "digits are accepted")
    return int(s)


def _json_constant(s: str) -> _Refused:
    return _Refused(s, f"{s} is not a finite number")


def parse_json(text: str, *, root: Loc = ()) -> Any:
    """A JSON document; NaN, Infinity, overlong integers, deep nesting and lone surrogates are
    refused with their path."""
    _check_json_depth(text, MAX_DEPTH, root)
    try:
        data = json.loads(text, parse_int=_json_int, parse_constant=_json_constant)
    except json.JSONDecodeError as err:
        raise DocumentError(root, f"not valid JSON (line {err.lineno}, column {err.colno}): "
                            f"{err.msg}", "json_invalid") from None
    except RecursionError:  # the scan above stops nesting long before; kept as a last guard
        raise DocumentError(root, f"nested deeper than {MAX_DEPTH} levels", "too_deep") from None
    return check_values(data, root)


# ----- YAML --------------------------------------------------------------------------------

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader whose numbers are bounded before they are converted (a long or
    sexagesimal integer costs time quadratic in its length)."""


def _yaml_number(kind: str) -> Any:
    base = getattr(yaml.SafeLoader, f"construct_yaml_{kind}")

    def construct(loader: Any, node: yaml.ScalarNode) -> Any:
        text = str(node.value)
        limit = MAX_DIGITS if kind == "int" else MAX_NUMBER_CHARS
        if len(text.replace("_", "")) > limit:
            what = "an integer of" if kind == "int" else "a number of"
            return _Refused(text[:12] + "…", f"{what} {len(text)} characters; at most {limit} "
                            "digits are accepted")
        return base(loader, node)

    return construct


_Loader.add_constructor("tag:yaml.org,2002:int", _yaml_number("int"))
_Loader.add_constructor("tag:yaml.org,2002:float", _yaml_number("float"))


def _yaml_shape(text: str, root: Loc) -> None:
    """Depth and value count of the document as built, aliases expanded, from the parser's
    events alone (no recursion, nothing built), so a deep or exploding document is refused
    before anything is composed."""
    anchors: dict[str, tuple[int, int]] = {}
    # per open collection: [anchor, depth below, nodes, is_mapping, key, expecting key, index]
    stack: list[list[Any]] = []

    def path() -> Loc:
        return (*root, *(lvl[4] if lvl[3] else lvl[6] for lvl in stack))

    def done(depth: int, nodes: int, label: str | None) -> None:
        if not stack:
            return
        top = stack[-1]
        top[1] = max(top[1], depth + 1)
        top[2] += nodes
        if top[2] > MAX_NODES:
            raise DocumentError(tuple(root), f"the document has more than {MAX_NODES} values "
                                "(aliases expanded)", "too_large")
        if top[3]:
            if top[5]:
                top[4] = label if label is not None else "?"
            top[5] = not top[5]
        else:
            top[6] += 1

    try:
        for ev in yaml.parse(text, Loader=_BaseLoader):
            if isinstance(ev, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise DocumentError(path(), f"nested deeper than {MAX_DEPTH} levels "
                                        f"(line {ev.start_mark.line + 1})", "too_deep")
                stack.append([ev.anchor, 1, 1, isinstance(ev, yaml.MappingStartEvent), None,
                              True, 0])
            elif isinstance(ev, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                anchor, depth, nodes = stack.pop()[:3]
                if anchor:
                    anchors[anchor] = (depth, nodes)
                done(depth, nodes, None)
            elif isinstance(ev, yaml.ScalarEvent):
                if ev.anchor:
                    anchors[ev.anchor] = (1, 1)
                done(1, 1, str(ev.value)[:100])
            elif isinstance(ev, yaml.AliasEvent):
                depth, nodes = anchors.get(str(ev.anchor), (1, 1))
                if len(stack) + depth > MAX_DEPTH:
                    raise DocumentError(path(), f"nested deeper than {MAX_DEPTH} levels through "
                                        f"alias *{ev.anchor} (line {ev.start_mark.line + 1})",
                                        "too_deep")
                done(depth, nodes, None)
    except yaml.YAMLError:
        return  # yaml.load below reports it with its position


def parse_yaml(text: str, *, root: Loc = ()) -> Any:
    """A YAML document (safe tags only), bounded like ``parse_json``."""
    _yaml_shape(text, root)
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise DocumentError(root, f"not valid YAML{where}: "
                            f"{getattr(err, 'problem', None) or err}", "yaml_invalid") from None
    except (ValueError, RecursionError, OverflowError) as err:  # a bounded scalar still refused
        raise DocumentError(root, f"not valid YAML: {type(err).__name__}: {str(err)[:200]}",
                            "yaml_invalid") from None
    return check_values(data, root)


# ----- values ------------------------------------------------------------------------------

def _bad_text(s: str) -> bool:
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_values(data: Any, root: Loc = ()) -> Any:
    """Walks a parsed document (iteratively) and refuses non-finite or unconverted numbers,
    lone surrogates in text and documents with too many values or levels, naming the path."""
    budget = MAX_NODES
    todo: list[tuple[Any, Loc]] = [(data, root)]
    while todo:
        obj, loc = todo.pop()
        budget -= 1
        if budget < 0:
            raise DocumentError(root, f"the document has more than {MAX_NODES} values",
                                "too_large")
        if len(loc) - len(root) > MAX_DEPTH:
            raise DocumentError(loc[:len(root) + MAX_DEPTH],
                                f"nested deeper than {MAX_DEPTH} levels", "too_deep")
        if isinstance(obj, _Refused):
            raise DocumentError(loc, obj.why, "number_too_large" if "digits" in obj.why
                                or "characters" in obj.why else "finite_number")
        if isinstance(obj, float) and not math.isfinite(obj):
            raise DocumentError(loc, f"{obj} is not a finite number", "finite_number")
        if isinstance(obj, str) and _bad_text(obj):
            raise DocumentError(loc, "text holds a lone surrogate: not valid Unicode",
                                "unicode")
        if isinstance(obj, dict):
            for k, v in obj.items():
                key: str | int = k if isinstance(k, str) else str(k)
                if isinstance(k, _Refused | float) or (isinstance(k, str) and _bad_text(k)):
                    raise DocumentError((*loc, "?"), "a key must be text (valid Unicode)",
                                        "key")
                todo.append((v, (*loc, key)))
        elif isinstance(obj, list):
            todo.extend((v, (*loc, i)) for i, v in enumerate(obj))
    return data
