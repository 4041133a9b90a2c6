"""A small, safe parser and evaluator for REDCap's filterLogic (no ``eval``).

Supported: ``[field]``, ``[event][field]``, ``[field(code)]`` for checkboxes, the comparisons
``= <> != < > <= >=``, ``and``/``or`` (any case), parentheses, quoted strings, numbers and blank tests
(``[x] = ''``). Logic is evaluated per record-event row; ``[event][field]`` reads that event of the same
record. Like REDCap, two numeric operands compare as numbers, anything else as text, and an ordering
comparison with a blank operand is false.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_redcap.emulator.formats import ApiError
from airflow_provider_redcap.emulator.project import Project
from airflow_provider_redcap.emulator.records import COMPLETE_SUFFIX, key_for
from airflow_provider_redcap.emulator.storage import DataKey

_TOKEN = re.compile(
    r"\s*(?:(?P<ref>\[[^\[\]]+\])|(?P<str>'[^']*'|\"[^\"]*\")|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<op><>|!=|<=|>=|==|=|<|>)|(?P<par>[()])|(?P<word>[A-Za-z_]+))"
)
_NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")

INVALID = 'The value of the parameter "filterLogic" is not valid'


@dataclass(frozen=True)
class Ref:
    event: str | None
    field: str
    code: str | None


@dataclass(frozen=True)
class Literal:
    value: str


@dataclass(frozen=True)
class Compare:
    left: Ref | Literal
    op: str
    right: Ref | Literal


@dataclass(frozen=True)
class BoolOp:
    op: str
    parts: tuple[Any, ...]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ApiError(400, INVALID)
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ApiError(400, INVALID)
        self.pos += 1
        return token

    def parse(self) -> Any:
        node = self.expr()
        if self.peek() is not None:
            raise ApiError(400, INVALID)
        return node

    def expr(self) -> Any:
        parts = [self.conj()]
        while (t := self.peek()) and t[0] == "word" and t[1].lower() == "or":
            self.take()
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def conj(self) -> Any:
        parts = [self.atom()]
        while (t := self.peek()) and t[0] == "word" and t[1].lower() == "and":
            self.take()
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def atom(self) -> Any:
        token = self.peek()
        if token == ("par", "("):
            self.take()
            node = self.expr()
            if self.take() != ("par", ")"):
                raise ApiError(400, INVALID)
            return node
        left = self.operand()
        kind, op = self.take()
        if kind != "op":
            raise ApiError(400, INVALID)
        return Compare(left, {"==": "=", "!=": "<>"}.get(op, op), self.operand())

    def operand(self) -> Ref | Literal:
        kind, value = self.take()
        if kind == "str":
            return Literal(value[1:-1])
        if kind == "num":
            return Literal(value)
        if kind == "ref":
            event: str | None = None
            nxt = self.peek()
            if nxt is not None and nxt[0] == "ref":
                event = value[1:-1]
                value = self.take()[1]
            name = value[1:-1].strip()
            code = None
            match = re.fullmatch(r"([a-z0-9_]+)\(([^()]+)\)", name)
            if match:
                name, code = match.group(1), match.group(2)
            return Ref(event, name, code)
        raise ApiError(400, INVALID)


def _validate(node: Any, project: Project) -> None:
    if isinstance(node, BoolOp):
        for part in node.parts:
            _validate(part, project)
    elif isinstance(node, Compare):
        for side in (node.left, node.right):
            if isinstance(side, Ref):
                known = side.field in project.fields or (
                    side.field.endswith(COMPLETE_SUFFIX)
                    and side.field[: -len(COMPLETE_SUFFIX)] in project.forms
                )
                if not known or (side.event is not None and project.event_by_name(side.event) is None):
                    raise ApiError(400, INVALID)


def _compare(left: str, op: str, right: str) -> bool:
    if _NUMERIC.match(left) and _NUMERIC.match(right):
        a: Any = float(left)
        b: Any = float(right)
    else:
        if op in ("<", ">", "<=", ">=") and (left == "" or right == ""):
            return False
        a, b = left, right
    return {
        "=": a == b,
        "<>": a != b,
        "<": a < b,
        ">": a > b,
        "<=": a <= b,
        ">=": a >= b,
    }[op]


def compile_filter(
    text: str, project: Project
) -> Callable[[str, DataKey, dict[DataKey, dict[str, Any]]], bool]:
    """Parse ``text`` once; the result tells whether a (record, row key, record data) row matches."""
    tree = _Parser(_tokens(text)).parse()
    _validate(tree, project)

    def resolve(side: Ref | Literal, key: DataKey, data: dict[DataKey, dict[str, Any]]) -> str:
        if isinstance(side, Literal):
            return side.value
        event_id = key[0] if side.event is None else project.event_by_name(side.event).event_id  # type: ignore[union-attr]
        fld = project.fields.get(side.field)
        form = fld.form if fld is not None else side.field[: -len(COMPLETE_SUFFIX)]
        row_key = key if side.event is None and key[1] == form else key_for(project, event_id, form)
        value = data.get(row_key, {}).get(side.field, "")
        if fld is not None and fld.is_checkbox:
            codes = value if isinstance(value, list) else ([value] if value else [])
            return ("1" if side.code in codes else "0") if side.code is not None else ",".join(codes)
        return value

    def evaluate(node: Any, key: DataKey, data: dict[DataKey, dict[str, Any]]) -> bool:
        if isinstance(node, BoolOp):
            results = (evaluate(p, key, data) for p in node.parts)
            return any(results) if node.op == "or" else all(results)
        return _compare(resolve(node.left, key, data), node.op, resolve(node.right, key, data))

    return lambda record, key, data: evaluate(tree, key, data)
