"""AWS IoT rules SQL (version 2016-03-23), the subset EMS topic rules use, and MQTT topic filters.

`parse` turns a rule's SQL into a `Rule`; `Rule.apply` runs it on one MQTT message and returns
what the rule's actions would receive (None when the rule does not fire). Pure: the caller passes
the topic, the payload bytes, the client id and the clock.

Supported:
- SELECT `*`, fields (`a`, nested `a.b.c`), literals ('text', 12, 3.5, true, false), functions
  `topic()`, `topic(n)` (1-based level), `timestamp()`, `clientid()`, `encode(*, 'base64')`,
  arithmetic `+ - * / %`, each optionally `AS name`. An unaliased field is named by its last
  segment (`a.b` -> "b"), as AWS does; anything else must be given `AS name`.
- FROM a quoted MQTT topic filter with `+` and `#`.
- WHERE with `= <> != < <= > >=`, AND, OR, NOT, parentheses, and the same operands.
- Keywords and function names are case-insensitive; field names are not.

AWS's Undefined is kept: a missing field, `topic(9)` on a 4-level topic or a type mismatch is
Undefined; Undefined keys are left out of the output and a WHERE that is not exactly true does
not fire. Comparisons: numbers numerically (1 = 1.0), strings with strings, booleans with
booleans; `=` between different types is false and `<>` true; ordering different types is
Undefined. AND/OR/NOT take booleans (or the strings "true"/"false").

Payloads: a JSON object is merged by `*` and its fields can be referenced. An empty payload
merges nothing. Any other payload (binary, text, a JSON array or scalar) has no fields (they are
Undefined); `SELECT *` of it raises PayloadNotJson, because AWS would hand the raw bytes to the
action and a Lambda action cannot take them: use `encode(*, 'base64')`, as AWS advises.

Not supported (ValueError at parse time): SET, CASE, nested SELECT, array indexing, JSON object
or array literals, quoted identifiers, functions other than those above.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "AS", "TRUE", "FALSE"}
_UNSUPPORTED_KEYWORDS = {"SET", "CASE", "WHEN", "THEN", "ELSE", "END", "IN", "IS", "LIKE", "BETWEEN"}
_COMPARISONS = ("=", "<>", "!=", "<=", ">=", "<", ">")


class PayloadNotJson(ValueError):
    """SELECT * of a payload that is not a JSON object: AWS would pass raw bytes on."""


class _UndefinedType:
    _instance: _UndefinedType | None = None

    def __new__(cls) -> _UndefinedType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "Undefined"


Undefined = _UndefinedType()


# --- MQTT topic filters -----------------------------------------------------------------------


def validate_filter(topic_filter: str) -> None:
    """Raise ValueError unless `topic_filter` is a valid MQTT filter."""
    if not topic_filter:
        raise ValueError("topic filter is empty")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"topic filter {topic_filter!r}: '#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise ValueError(f"topic filter {topic_filter!r}: '+' must be a whole level")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching: '+' is one level, '#' the rest (including none); '$' topics need a literal first level."""
    validate_filter(topic_filter)
    if topic.startswith("$") and topic_filter[0] in "+#":
        return False
    wanted = topic_filter.split("/")
    levels = topic.split("/")
    for i, level in enumerate(wanted):
        if level == "#":
            return True
        if i >= len(levels):
            return False
        if level != "+" and level != levels[i]:
            return False
    return len(levels) == len(wanted)


# --- tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "string", "name", "op", "end"
    text: str
    value: Any
    at: int


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)
      | (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op><>|!=|<=|>=|[=<>(),.*+\-/%])
    )""",
    re.VERBOSE,
)


def _tokenize(sql: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        while position < len(sql) and sql[position].isspace():
            position += 1
        if position >= len(sql):
            tokens.append(_Token("end", "", None, position))
            return tokens
        m = _TOKEN.match(sql, position)
        if not m or m.end() == position:
            char = sql[position]
            hint = " (quoted identifiers are not supported)" if char in '"`' else ""
            if char == "'":
                raise ValueError(f"unterminated string at position {position}")
            raise ValueError(f"unexpected character {char!r} at position {position}{hint}")
        kind = m.lastgroup or "op"
        text = m.group(kind)
        start = m.start(kind)
        if kind == "number":
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
        elif kind == "string":
            value = re.sub(r"\\(.)", r"\1", text[1:-1])
        else:
            value = text
        tokens.append(_Token(kind, text, value, start))
        position = m.end()


# --- expressions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    topic: str
    payload: bytes
    document: Any  # the decoded JSON object, or Undefined
    client_id: str
    now_ms: int


Expr = Callable[[_Context], Any]


@dataclass(frozen=True)
class _Item:
    expr: Expr | None  # None: the `*` wildcard
    name: str | None


def _field(path: tuple[str, ...]) -> Expr:
    def evaluate(ctx: _Context) -> Any:
        node = ctx.document
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return Undefined
            node = node[key]
        return node

    return evaluate


def _literal(value: Any) -> Expr:
    return lambda ctx: value


def _topic_level(n: int) -> Expr:
    def evaluate(ctx: _Context) -> Any:
        levels = ctx.topic.split("/")
        return levels[n - 1] if 1 <= n <= len(levels) else Undefined

    return evaluate


def _encode_payload(ctx: _Context) -> str:
    return base64.b64encode(ctx.payload).decode("ascii")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> Any:
    if _is_number(value):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return Undefined
    return Undefined


def _as_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return Undefined


def _compare(op: str, left: Any, right: Any) -> Any:
    if left is Undefined or right is Undefined:
        return Undefined
    if op in ("=", "<>", "!="):
        same_kind = (_is_number(left) and _is_number(right)) or type(left) is type(right)
        equal = same_kind and left == right
        return equal if op == "=" else not equal
    if _is_number(left) or _is_number(right):
        left, right = _as_number(left), _as_number(right)
        if left is Undefined or right is Undefined:
            return Undefined
    elif not (isinstance(left, str) and isinstance(right, str)):
        return Undefined
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _arithmetic(op: str, left: Any, right: Any) -> Any:
    left, right = _as_number(left), _as_number(right)
    if left is Undefined or right is Undefined:
        return Undefined
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        return Undefined
    if op == "%":
        return left % right
    quotient = left / right
    both_ints = isinstance(left, int) and isinstance(right, int)
    return int(quotient) if both_ints and left % right == 0 else quotient


def _binary(op: str, left: Expr, right: Expr) -> Expr:
    if op in _COMPARISONS:
        return lambda ctx: _compare(op, left(ctx), right(ctx))
    if op in ("AND", "OR"):

        def logical(ctx: _Context) -> Any:
            a, b = _as_bool(left(ctx)), _as_bool(right(ctx))
            if a is Undefined or b is Undefined:
                return Undefined
            return (a and b) if op == "AND" else (a or b)

        return logical
    return lambda ctx: _arithmetic(op, left(ctx), right(ctx))


def _negate(operand: Expr) -> Expr:
    def evaluate(ctx: _Context) -> Any:
        value = _as_bool(operand(ctx))
        return Undefined if value is Undefined else not value

    return evaluate


def _minus(operand: Expr) -> Expr:
    def evaluate(ctx: _Context) -> Any:
        value = _as_number(operand(ctx))
        return Undefined if value is Undefined else -value

    return evaluate


# --- parser -----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens = _tokenize(sql)
        self.i = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def is_keyword(self, word: str) -> bool:
        return self.token.kind == "name" and self.token.text.upper() == word

    def is_op(self, *ops: str) -> bool:
        return self.token.kind == "op" and self.token.text in ops

    def expect_keyword(self, word: str) -> None:
        if not self.is_keyword(word):
            raise self.error(f"expected {word}")
        self.advance()

    def expect_op(self, op: str) -> None:
        if not self.is_op(op):
            raise self.error(f"expected {op!r}")
        self.advance()

    def error(self, message: str) -> ValueError:
        token = self.token
        found = "end of statement" if token.kind == "end" else repr(token.text)
        return ValueError(f"{message} at position {token.at}, found {found}")

    # statement

    def statement(self) -> Rule:
        self.expect_keyword("SELECT")
        items = [self.item()]
        while self.is_op(","):
            self.advance()
            items.append(self.item())
        self.expect_keyword("FROM")
        if self.token.kind != "string":
            raise self.error("FROM takes a quoted topic filter like 'ems/+/telemetry'")
        topic_filter = self.advance().value
        validate_filter(topic_filter)
        where: Expr | None = None
        if self.is_keyword("WHERE"):
            self.advance()
            where = self.expression()
        if self.token.kind != "end":
            raise self.error("unexpected text after the statement")
        return Rule(sql=self.sql, topic_filter=topic_filter, items=tuple(items), where=where)

    def item(self) -> _Item:
        if self.is_op("*"):
            self.advance()
            return _Item(None, None)
        start = self.token
        expr, default_name = self.select_expression()
        if self.is_keyword("AS"):
            self.advance()
            if self.token.kind != "name" or self.token.text.upper() in KEYWORDS:
                raise self.error("AS takes a name")
            return _Item(expr, self.advance().text)
        if default_name is None:
            end = self.token.at
            text = self.sql[start.at : end].strip()
            raise ValueError(f"select item {text!r} needs AS <name> (only plain fields are named for you)")
        return _Item(expr, default_name)

    def select_expression(self) -> tuple[Expr, str | None]:
        before = self.i
        expr = self.expression()
        consumed = self.tokens[before : self.i]
        is_path = len(consumed) % 2 == 1 and all(
            (t.kind == "name" and t.text.upper() not in KEYWORDS) if i % 2 == 0 else t.text == "."
            for i, t in enumerate(consumed)
        )
        return expr, (consumed[-1].text if is_path else None)

    # expressions, loosest first

    def expression(self) -> Expr:
        return self.disjunction()

    def disjunction(self) -> Expr:
        left = self.conjunction()
        while self.is_keyword("OR"):
            self.advance()
            left = _binary("OR", left, self.conjunction())
        return left

    def conjunction(self) -> Expr:
        left = self.negation()
        while self.is_keyword("AND"):
            self.advance()
            left = _binary("AND", left, self.negation())
        return left

    def negation(self) -> Expr:
        if self.is_keyword("NOT"):
            self.advance()
            return _negate(self.negation())
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.additive()
        if self.token.kind == "name" and self.token.text.upper() in _UNSUPPORTED_KEYWORDS:
            raise self.error(f"{self.token.text.upper()} is not supported")
        if self.is_op(*_COMPARISONS):
            op = self.advance().text
            left = _binary(op, left, self.additive())
            if self.is_op(*_COMPARISONS):
                raise self.error("comparisons cannot be chained; use AND")
        return left

    def additive(self) -> Expr:
        left = self.multiplicative()
        while self.is_op("+", "-"):
            op = self.advance().text
            left = _binary(op, left, self.multiplicative())
        return left

    def multiplicative(self) -> Expr:
        left = self.unary()
        while self.is_op("*", "/", "%"):
            op = self.advance().text
            left = _binary(op, left, self.unary())
        return left

    def unary(self) -> Expr:
        if self.is_op("-"):
            self.advance()
            return _minus(self.unary())
        return self.primary()

    def primary(self) -> Expr:
        token = self.token
        if token.kind in ("number", "string"):
            self.advance()
            return _literal(token.value)
        if self.is_op("("):
            self.advance()
            inner = self.expression()
            self.expect_op(")")
            return inner
        if token.kind != "name":
            raise self.error("expected a field, a literal or a function")
        word = token.text.upper()
        if word in ("TRUE", "FALSE"):
            self.advance()
            return _literal(word == "TRUE")
        if word in _UNSUPPORTED_KEYWORDS or word == "SELECT":
            raise self.error(f"{word} is not supported")
        if word in KEYWORDS:
            raise self.error("expected a field, a literal or a function")
        self.advance()
        if self.is_op("("):
            return self.function(token)
        path = [token.text]
        while self.is_op("."):
            self.advance()
            if self.token.kind != "name":
                raise self.error("expected a field name after '.'")
            path.append(self.advance().text)
        if self.is_op("("):
            raise self.error("method calls are not supported")
        return _field(tuple(path))

    def function(self, name_token: _Token) -> Expr:
        name = name_token.text.lower()
        if name not in ("topic", "timestamp", "clientid", "encode"):
            raise ValueError(
                f"function {name_token.text}() is not supported (only topic, timestamp, clientid, encode)"
            )
        self.expect_op("(")
        args: list[Any] = []
        while not self.is_op(")"):
            if args:
                self.expect_op(",")
            if self.is_op("*"):
                self.advance()
                args.append("*")
            elif self.token.kind in ("number", "string"):
                args.append(self.advance().value)
            else:
                raise self.error(f"{name}() takes only literal arguments here")
        self.advance()
        if name == "topic":
            if not args:
                return lambda ctx: ctx.topic
            if len(args) == 1 and isinstance(args[0], int) and args[0] >= 1:
                return _topic_level(args[0])
            raise ValueError(f"topic() takes no argument or one level number from 1, got {args}")
        if name in ("timestamp", "clientid"):
            if args:
                raise ValueError(f"{name}() takes no arguments")
            return (lambda ctx: ctx.now_ms) if name == "timestamp" else (lambda ctx: ctx.client_id)
        if name == "encode":
            if args == ["*", "base64"]:
                return _encode_payload
            raise ValueError("encode() is supported only as encode(*, 'base64')")
        raise AssertionError(name)  # unreachable: names checked above


# --- the rule ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    sql: str
    topic_filter: str
    items: tuple[_Item, ...]
    where: Expr | None

    @property
    def selects_all(self) -> bool:
        return any(item.expr is None for item in self.items)

    def apply(self, topic: str, payload: bytes, client_id: str, now_ms: int) -> dict[str, Any] | None:
        """The JSON the rule's actions receive, or None when the topic or WHERE does not match."""
        if not topic_matches(self.topic_filter, topic):
            return None
        document = _decode(payload)
        ctx = _Context(topic, payload, document, client_id, now_ms)
        if self.where is not None and self.where(ctx) is not True:
            return None
        out: dict[str, Any] = {}
        for item in self.items:
            if item.expr is None:
                if isinstance(document, dict):
                    out.update(document)
                elif payload.strip():
                    raise PayloadNotJson(
                        f"SELECT * of a payload on {topic!r} that is not a JSON object: "
                        "AWS passes it on as raw bytes; use encode(*, 'base64') AS data"
                    )
                continue
            value = item.expr(ctx)
            if value is not Undefined:
                out[item.name or ""] = value
        return out


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return Undefined


def parse(sql: str) -> Rule:
    """Parse a topic rule's SQL; ValueError with the position and reason for what is not supported."""
    if not isinstance(sql, str) or not sql.strip():
        raise ValueError("SQL statement is empty")
    if re.match(r"\s*SET\b", sql, re.IGNORECASE):
        raise ValueError("SET clauses are not supported")
    return _Parser(sql).statement()
