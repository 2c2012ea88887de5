"""EventBridge event patterns: which events a rule's pattern matches, and which patterns AWS would refuse.

Pure functions over the parsed JSON of a pattern and of an event, so the local cloud's PutEvents
routes exactly as the template's rules would in AWS. The semantics follow the EventBridge user
guide ("Event patterns", "Content filtering", "Comparison operators"):

- a pattern is an object; a leaf is a non-empty array of alternatives (OR), fields are ANDed;
- a field the pattern names but the event lacks never matches, except with {"exists": false};
- an array in the event matches if any of its elements matches; an array of objects matches a
  nested pattern if one element matches all of it;
- exact values compare strings character by character, numbers numerically (300 matches 300.0,
  as Ruler inserts a numeric matcher next to the literal one), true/false/null only themselves;
  null and "" are different values;
- operators: prefix, suffix (each optionally {"equals-ignore-case": ...}), equals-ignore-case,
  wildcard, anything-but (a value, a list of strings or of numbers, or {prefix|suffix|
  equals-ignore-case|wildcard: value or list}), numeric, exists, cidr; "$or" at any level.

Judgement calls where the guide is silent: a literal anything-but matches any leaf value not
listed (also null and booleans); the string operators match strings only; numeric matches JSON
numbers only (never booleans, never "5"); exists looks at leaves, so an object or an empty array
does not "exist".
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

_OPERATORS = (
    "prefix",
    "suffix",
    "equals-ignore-case",
    "anything-but",
    "numeric",
    "exists",
    "cidr",
    "wildcard",
)
_ANYTHING_BUT_OPERATORS = ("prefix", "suffix", "equals-ignore-case", "wildcard")
_LOWER = (">", ">=")
_UPPER = ("<", "<=")

_MISSING = object()


def validate(pattern: Any) -> None:
    """Raise ValueError naming the path and the reason if EventBridge would refuse this pattern."""
    if not isinstance(pattern, dict):
        raise ValueError("event pattern must be a JSON object")
    _validate_object(pattern, "")


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """True when `event` matches `pattern`; ValueError if the pattern itself is malformed."""
    validate(pattern)
    return _match_object(pattern, event)


# --- validation -------------------------------------------------------------------------------


def _where(path: str) -> str:
    return f"at {path!r}: " if path else ""


def _validate_object(node: dict[str, Any], path: str) -> None:
    if not node:
        raise ValueError(f"{_where(path)}empty objects are not allowed")
    for key, value in node.items():
        if not isinstance(key, str):
            raise ValueError(f"{_where(path)}field names must be strings, got {key!r}")
        if key == "$or":
            _validate_or(value, path)
            continue
        child = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            _validate_object(value, child)
        elif isinstance(value, list):
            _validate_leaf(value, child)
        else:
            raise ValueError(f"{_where(child)}must be an object or an array, got {_json_type(value)}")


def _validate_or(value: Any, path: str) -> None:
    if not isinstance(value, list):
        raise ValueError(f"{_where(path)}$or must be an array of objects")
    if len(value) < 2:
        raise ValueError(f"{_where(path)}$or needs at least 2 objects, got {len(value)}")
    for branch in value:
        if not isinstance(branch, dict):
            raise ValueError(f"{_where(path)}$or may only hold objects, got {_json_type(branch)}")
        _validate_object(branch, path)


def _validate_leaf(values: list[Any], path: str) -> None:
    if not values:
        raise ValueError(f"{_where(path)}empty arrays are not allowed")
    for value in values:
        if isinstance(value, dict):
            _validate_operator(value, path)
        elif isinstance(value, list):
            raise ValueError(
                f"{_where(path)}match values must be string, number, true, false or null, not an array"
            )


def _validate_operator(expr: dict[str, Any], path: str) -> None:
    if len(expr) != 1:
        raise ValueError(f"{_where(path)}a match expression has exactly one key, got {sorted(expr)}")
    ((op, arg),) = expr.items()
    if op not in _OPERATORS:
        raise ValueError(f"{_where(path)}unrecognized match type {op!r}")
    if op in ("prefix", "suffix"):
        if isinstance(arg, dict):
            if list(arg) != ["equals-ignore-case"]:
                raise ValueError(f"{_where(path)}{op} takes a string or {{'equals-ignore-case': string}}")
            arg = arg["equals-ignore-case"]
        _require_string(arg, op, path)
    elif op == "equals-ignore-case":
        _require_string(arg, op, path)
    elif op == "wildcard":
        _require_string(arg, op, path)
        _wildcard_regex(arg, path)
    elif op == "cidr":
        _require_string(arg, op, path)
        _network(arg, path)
    elif op == "exists":
        if not isinstance(arg, bool):
            raise ValueError(f"{_where(path)}exists must be true or false, got {_json_type(arg)}")
    elif op == "numeric":
        _numeric_bounds(arg, path)
    else:
        _validate_anything_but(arg, path)


def _validate_anything_but(arg: Any, path: str) -> None:
    if isinstance(arg, dict):
        if len(arg) != 1 or next(iter(arg)) not in _ANYTHING_BUT_OPERATORS:
            raise ValueError(
                f"{_where(path)}anything-but takes one of {list(_ANYTHING_BUT_OPERATORS)}, got {sorted(arg)}"
            )
        ((op, inner),) = arg.items()
        items = inner if isinstance(inner, list) else [inner]
        if not items:
            raise ValueError(f"{_where(path)}anything-but {op} list is empty")
        for item in items:
            _require_string(item, f"anything-but {op}", path)
            if op in ("prefix", "suffix") and item == "":
                raise ValueError(f"{_where(path)}anything-but {op} must not be empty")
            if op == "wildcard":
                _wildcard_regex(item, path)
        return
    items = arg if isinstance(arg, list) else [arg]
    if not items:
        raise ValueError(f"{_where(path)}anything-but list is empty")
    kinds = set()
    for item in items:
        if isinstance(item, str):
            kinds.add("string")
        elif _is_number(item):
            kinds.add("number")
        else:
            raise ValueError(f"{_where(path)}anything-but takes strings or numbers, got {_json_type(item)}")
    if len(kinds) > 1:
        raise ValueError(f"{_where(path)}anything-but list must be all strings or all numbers, not mixed")


def _numeric_bounds(arg: Any, path: str) -> tuple[tuple[str, float] | None, tuple[str, float] | None]:
    """Parse [op, n, (op, n)] into (lower, upper) bounds; "=" is both."""
    if not isinstance(arg, list) or not arg:
        raise ValueError(f"{_where(path)}numeric must be a non-empty array like ['>', 0, '<=', 5]")
    if len(arg) not in (2, 4):
        raise ValueError(
            f"{_where(path)}numeric takes one or two (operator, number) pairs, got {len(arg)} items"
        )
    pairs = [(arg[i], arg[i + 1]) for i in range(0, len(arg), 2)]
    for op, number in pairs:
        if op not in ("=", *_LOWER, *_UPPER):
            raise ValueError(f"{_where(path)}unrecognized numeric operator {op!r}")
        if not _is_number(number):
            raise ValueError(f"{_where(path)}value of {op} must be a number, got {_json_type(number)}")
    (op1, n1) = pairs[0]
    if op1 == "=":
        if len(pairs) > 1:
            raise ValueError(f"{_where(path)}numeric '=' cannot be combined with another operator")
        return (">=", n1), ("<=", n1)
    if op1 in _UPPER:
        if len(pairs) > 1:
            raise ValueError(f"{_where(path)}numeric range must give the lower bound (> or >=) first")
        return None, (op1, n1)
    if len(pairs) == 1:
        return (op1, n1), None
    (op2, n2) = pairs[1]
    if op2 not in _UPPER:
        raise ValueError(f"{_where(path)}second numeric operator must be < or <=, got {op2!r}")
    if n1 >= n2:
        raise ValueError(
            f"{_where(path)}numeric range is empty: lower bound {n1} is not below upper bound {n2}"
        )
    return (op1, n1), (op2, n2)


def _require_string(value: Any, op: str, path: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{_where(path)}{op} match pattern must be a string, got {_json_type(value)}")


def _wildcard_regex(text: str, path: str = "") -> re.Pattern[str]:
    """'*' is any run of characters; '\\*' and '\\\\' escape; '**' is refused, as AWS does."""
    out: list[str] = []
    i = 0
    previous_star = False
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "*\\":
                raise ValueError(f"{_where(path)}wildcard {text!r}: only '\\*' and '\\\\' may be escaped")
            out.append(re.escape(text[i + 1]))
            i += 2
            previous_star = False
            continue
        if char == "*":
            if previous_star:
                raise ValueError(f"{_where(path)}wildcard {text!r}: consecutive '*' are not allowed")
            out.append(".*")
            previous_star = True
        else:
            out.append(re.escape(char))
            previous_star = False
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _network(text: str, path: str = "") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{_where(path)}cidr {text!r} is not an IP address range") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# --- matching ---------------------------------------------------------------------------------


def _match_object(pattern: dict[str, Any], node: Any) -> bool:
    if isinstance(node, list):
        objects = [item for item in node if isinstance(item, dict)]
        if objects:
            return any(_match_object(pattern, item) for item in objects)
        node = _MISSING
    for key, sub in pattern.items():
        if key == "$or":
            if not any(_match_object(branch, node) for branch in sub):
                return False
            continue
        value = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
        if isinstance(sub, dict):
            if not _match_object(sub, value):
                return False
        elif not _match_leaf(sub, value):
            return False
    return True


def _leaf_values(value: Any) -> list[Any]:
    """The leaf values a field holds: none if absent or an object, each element of an array."""
    if value is _MISSING or isinstance(value, dict):
        return []
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaf_values(item)]
    return [value]


def _match_leaf(alternatives: list[Any], value: Any) -> bool:
    leaves = _leaf_values(value)
    for alternative in alternatives:
        if isinstance(alternative, dict) and "exists" in alternative:
            if bool(leaves) == alternative["exists"]:
                return True
        elif any(_match_value(alternative, leaf) for leaf in leaves):
            return True
    return False


def _equal(expected: Any, actual: Any) -> bool:
    if _is_number(expected) and _is_number(actual):
        return bool(expected == actual)
    if isinstance(expected, bool) or isinstance(actual, bool) or expected is None or actual is None:
        return expected is actual
    return isinstance(expected, str) and isinstance(actual, str) and expected == actual


def _match_value(alternative: Any, leaf: Any) -> bool:
    if not isinstance(alternative, dict):
        return _equal(alternative, leaf)
    ((op, arg),) = alternative.items()
    if op == "numeric":
        return _is_number(leaf) and _within(_numeric_bounds(arg, ""), leaf)
    if op == "anything-but":
        return _anything_but(arg, leaf)
    if op == "cidr":
        return isinstance(leaf, str) and _in_network(_network(arg), leaf)
    if not isinstance(leaf, str):
        return False
    if op == "equals-ignore-case":
        return leaf.casefold() == str(arg).casefold()
    if op == "wildcard":
        return _wildcard_regex(arg).fullmatch(leaf) is not None
    if isinstance(arg, dict):  # prefix/suffix with equals-ignore-case
        folded, wanted = leaf.casefold(), arg["equals-ignore-case"].casefold()
        return folded.startswith(wanted) if op == "prefix" else folded.endswith(wanted)
    return leaf.startswith(arg) if op == "prefix" else leaf.endswith(arg)


def _within(bounds: tuple[tuple[str, float] | None, tuple[str, float] | None], number: float) -> bool:
    lower, upper = bounds
    if lower and not (number > lower[1] if lower[0] == ">" else number >= lower[1]):
        return False
    return not upper or (number < upper[1] if upper[0] == "<" else number <= upper[1])


def _in_network(network: ipaddress.IPv4Network | ipaddress.IPv6Network, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) in network
    except ValueError:
        return False


def _anything_but(arg: Any, leaf: Any) -> bool:
    if isinstance(arg, dict):
        ((op, inner),) = arg.items()
        items = inner if isinstance(inner, list) else [inner]
        if not isinstance(leaf, str):
            return False
        if op == "prefix":
            return not any(leaf.startswith(item) for item in items)
        if op == "suffix":
            return not any(leaf.endswith(item) for item in items)
        if op == "equals-ignore-case":
            return all(leaf.casefold() != item.casefold() for item in items)
        return not any(_wildcard_regex(item).fullmatch(leaf) for item in items)
    items = arg if isinstance(arg, list) else [arg]
    return not any(_equal(item, leaf) for item in items)
