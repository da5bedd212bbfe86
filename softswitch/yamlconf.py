"""A YAML loader that remembers where every node came from, and error formatting with file:line:col.

Operators edit configs and dialplans by hand, so every error must point at the line to fix. PyYAML's
composer already records a position for every node; we build plain Python data from that node tree
and keep a map from each data path (``("contexts", "inbound", "routes", 0)``) to its line and column.

Plain scalars other than null and booleans are kept as *strings*: pydantic converts them to the
type the model asks for. This sidesteps YAML 1.1 surprises that bite phone systems in particular:
``0120123456`` would otherwise be read as an octal integer and ``18:00`` as the sexagesimal 1080.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

PathKey = tuple[str | int, ...]


class ConfigError(Exception):
    """Invalid configuration or dialplan; each error reads "file:line:col: field: message (hint: ...)"."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: list[str] = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass
class Located:
    """Plain data parsed from YAML plus the line/column (1-based) of every value and mapping key."""

    data: Any
    filename: str
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """Line and column of the deepest known node on `path` (the key itself when `key`)."""
        p = tuple(path)
        if key and p in self.keys:
            return self.keys[p]
        while p:
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), (1, 1))

    def data_path(self, loc: Sequence[str | int]) -> tuple[PathKey, bool]:
        """Map a pydantic error location onto a path in the data.

        Pydantic puts union tags and validator names into locations; those are not in the data, so
        any element the data does not contain is skipped. Returns the path and whether it was
        followed to the end (False when the error is about something missing).
        """
        node = self.data
        out: list[str | int] = []
        complete = True
        for elem in loc:
            if isinstance(node, dict) and elem in node:
                out.append(elem)
                node = node[elem]
            elif isinstance(node, dict) and str(elem) in node:
                out.append(str(elem))
                node = node[str(elem)]
            elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
                out.append(elem)
                node = node[elem]
            else:
                complete = False
        return tuple(out), complete

    def node_at(self, path: Sequence[str | int]) -> Any:
        """The data found at `path` (None when absent)."""
        node = self.data
        for elem in path:
            try:
                node = node[elem]
            except (KeyError, IndexError, TypeError):
                return None
        return node


def format_path(path: Iterable[str | int]) -> str:
    """``contexts.inbound.routes[0].steps[2]`` from a data path."""
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            out += ("." if out else "") + str(elem)
    return out or "(top level)"


def format_error(filename: str, pos: tuple[int, int], path: Iterable[str | int], message: str,
                 hint: str | None = None) -> str:
    """One error line in the format every tool and test relies on."""
    text = f"{filename}:{pos[0]}:{pos[1]}: {format_path(path)}: {message}"
    return f"{text} (hint: {hint})" if hint else text


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A "did you mean ...?" hint from the closest choices, or None."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"


def _resolve_scalar(node: yaml.ScalarNode) -> Any:
    if node.style is None:  # plain scalar: null and booleans only; numbers stay text for pydantic
        if node.tag == "tag:yaml.org,2002:null":
            return None
        if node.tag == "tag:yaml.org,2002:bool":
            return node.value.lower() in ("true", "yes", "on", "y")
    return node.value


def load_yaml(text: str, filename: str) -> Located:
    """Parse YAML text into plain data plus positions. Raises ConfigError on syntax errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(x for x in (exc.context, exc.problem) if x)
        hint = None
        if "\\t" in problem or "'\t'" in problem:
            hint = "YAML indentation must use spaces, not tabs"
        elif "indent" in problem or "mapping values" in problem or "block" in problem:
            hint = "check the indentation of this line and the one above; use spaces, not tabs"
        raise ConfigError([f"{filename}:{line}:{col}: (YAML): {problem}" + (f" (hint: {hint})" if hint else "")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{filename}:1:1: (YAML): {exc}"]) from None
    located = Located(data=None, filename=filename)
    errors: list[str] = []
    if root is None:
        located.data = {}
        located.values[()] = (1, 1)
        return located
    located.data = _build(root, (), located, errors, depth=0)
    if errors:
        raise ConfigError(errors)
    return located


def _build(node: yaml.Node, path: PathKey, loc: Located, errors: list[str], depth: int) -> Any:
    loc.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if depth > 64:  # recursive aliases would never end
        errors.append(format_error(loc.filename, loc.values[path], path, "nesting too deep"))
        return None
    if isinstance(node, yaml.ScalarNode):
        return _resolve_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), loc, errors, depth + 1) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:merge":
                merged = _build(value_node, path, loc, errors, depth + 1)
                for m in merged if isinstance(merged, list) else [merged]:
                    if isinstance(m, dict):
                        for k, v in m.items():
                            out.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                errors.append(format_error(loc.filename, pos, path, "mapping keys must be plain text"))
                continue
            key = key_node.value  # keys are always text: `1:` in a menu is the digit "1"
            kpath = (*path, key)
            kpos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in out:
                errors.append(format_error(loc.filename, kpos, kpath, f"duplicate key {key!r}",
                                           "a later key would silently replace the earlier one"))
                continue
            loc.keys[kpath] = kpos
            out[key] = _build(value_node, kpath, loc, errors, depth + 1)
        return out
    return None  # pragma: no cover - PyYAML only produces the three node kinds


def load_yaml_file(path: str | Path) -> Located:
    """Read and parse a YAML file; a missing or unreadable file is a ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}:1:1: (file): file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}:1:1: (file): cannot read: {exc}"]) from None
    return load_yaml(text, str(p))


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _descend(tp: Any, elem: str | int) -> Any:
    """The type reached from `tp` by one pydantic location element, or None."""
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if origin in (Union, UnionType):
        for arg in get_args(tp):
            if get_origin(arg) is Annotated and any(getattr(m, "tag", None) == elem for m in get_args(arg)[1:]):
                return _unwrap(arg)
        for arg in get_args(tp):
            found = _descend(arg, elem)
            if found is not None:
                return found
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, info in tp.model_fields.items():
            if elem in (name, info.alias):
                return info.annotation
        return None
    if origin in (list, tuple, set) and isinstance(elem, int):
        return get_args(tp)[0]
    if origin is dict and isinstance(elem, str):
        return get_args(tp)[1]
    return None


def _model_fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """Field names (as written in YAML) of the model a pydantic location points into, for hints."""
    current: Any = model
    for elem in loc:
        nxt = _descend(current, elem)
        if nxt is not None:
            current = nxt
    found = _find_model(current)
    if found is None:
        return []
    return [info.alias or name for name, info in found.model_fields.items()]


def _find_model(tp: Any) -> type[BaseModel] | None:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if get_origin(tp) in (Union, UnionType):
        for arg in get_args(tp):
            found = _find_model(arg)
            if found is not None:
                return found
    return None


def validation_errors(exc: ValidationError, located: Located, model: type[BaseModel]) -> list[str]:
    """Turn a pydantic ValidationError into located, hinted error lines."""
    out: list[str] = []
    seen: set[str] = set()
    for err in exc.errors():
        loc = err.get("loc", ())
        etype = err.get("type", "")
        path, complete = located.data_path(loc)
        message = err.get("msg", "invalid")
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        hint: str | None = (err.get("ctx") or {}).get("hint") if isinstance(err.get("ctx"), dict) else None
        pos = located.position(path)
        at_key = (err.get("ctx") or {}).get("at_key")
        if at_key is not None:
            pos = located.position((*path, at_key), key=True)
        if etype == "extra_forbidden":
            pos = located.position(path, key=True)
            known = _model_fields_at(model, [x for x in loc[:-1]])
            hint = did_you_mean(str(loc[-1]), known) or (
                "allowed here: " + ", ".join(known) if known else None)
            message = f"unknown field {loc[-1]!r}"
        elif etype == "missing":
            message = f"missing required field {loc[-1]!r}"
            path = (*path, loc[-1]) if not complete else path
        elif etype == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            choices = [c.strip().strip("'") for c in str(expected).replace(" or ", ",").split(",")]
            hint = hint or did_you_mean(str(err.get("input")), choices)
        elif etype in ("string_type",) and isinstance(err.get("input"), bool):
            hint = "YAML reads yes/no/on/off/true/false as booleans; put the value in quotes"
        text = format_error(located.filename, pos, path, message, hint)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out
