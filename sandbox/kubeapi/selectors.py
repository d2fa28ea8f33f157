"""Kubernetes label and field selectors: the query-string syntax, and matching objects against it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sandbox.kubeapi.meta import label_value_problems, qualified_name_problems


class SelectorError(ValueError):
    """A selector that does not parse; the API server answers 400 BadRequest with this text."""


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector. operator: = != in notin exists !exists gt lt."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "=":
            return present and value == self.values[0]
        if self.operator == "!=":
            return not present or value != self.values[0]
        if self.operator == "in":
            return present and value in self.values
        if self.operator == "notin":
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        # gt / lt compare integers; a label that is not an integer never matches, as in apimachinery.
        try:
            number = int(value) if present else None
        except ValueError:
            return False
        if number is None:
            return False
        bound = int(self.values[0])
        return number > bound if self.operator == "gt" else number < bound


def matches_all(requirements: tuple[Requirement, ...], labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in requirements)


# The lexer of k8s.io/apimachinery/pkg/labels: these characters end an identifier.
_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|<|>|[^\s!=,()<>]+)")


def _tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


_SYMBOLS = {"==", "!=", "=", "!", "(", ")", ",", "<", ">"}


def _check_key(key: str) -> None:
    problems = qualified_name_problems(key)
    if problems:
        raise SelectorError(f"unable to parse requirement: key: Invalid value: {key!r}: {problems[0]}")


def _check_value(value: str) -> None:
    problems = label_value_problems(value)
    if problems:
        raise SelectorError(f"unable to parse requirement: values[0]: Invalid value: {value!r}: {problems[0]}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.pos += 1
        return token

    def identifier(self, what: str) -> str:
        token = self.take()
        if token is None or token in _SYMBOLS:
            found = "end of string" if token is None else f"'{token}'"
            raise SelectorError(f"unable to parse requirement: found {found}, expected: {what}")
        return token

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.take()
            key = self.identifier("identifier after '!'")
            _check_key(key)
            return Requirement(key, "!exists")
        key = self.identifier("identifier")
        _check_key(key)
        op = self.peek()
        if op is None or op == ",":
            return Requirement(key, "exists")
        self.take()
        if op in ("=", "==", "!="):
            # `key=` selects the empty value, as in Kubernetes.
            value = "" if self.peek() in (None, ",") else self.identifier("identifier")
            _check_value(value)
            return Requirement(key, "!=" if op == "!=" else "=", (value,))
        if op in ("in", "notin"):
            return Requirement(key, op, self.value_set())
        if op in ("<", ">"):
            value = self.identifier("integer")
            if not re.fullmatch(r"-?\d+", value):
                raise SelectorError(
                    f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {value}"
                )
            return Requirement(key, "gt" if op == ">" else "lt", (value,))
        raise SelectorError(
            f"unable to parse requirement: found '{op}', expected: in, notin, =, ==, !=, gt, lt"
        )

    def value_set(self) -> tuple[str, ...]:
        if self.take() != "(":
            raise SelectorError("unable to parse requirement: found '', expected: '('")
        values: list[str] = []
        while True:
            token = self.peek()
            if token == ")":
                self.take()
                break
            if token == ",":
                # an empty member: `in (a,,b)` and `in (a,)` carry the empty value
                self.take()
                values.append("")
                continue
            value = self.identifier("',', ')' or identifier")
            _check_value(value)
            values.append(value)
            after = self.take()
            if after == ")":
                break
            if after != ",":
                raise SelectorError("unable to parse requirement: found end of string, expected: ')'")
        if not values:
            raise SelectorError("unable to parse requirement: for 'in', 'notin' operators, values set can't be empty")
        return tuple(values)


def parse_label_selector(text: str | None) -> tuple[Requirement, ...]:
    if not text or not text.strip():
        return ()
    parser = _Parser(text)
    requirements = []
    while True:
        requirements.append(parser.requirement())
        token = parser.take()
        if token is None:
            break
        if token != ",":
            raise SelectorError(f"unable to parse requirement: found '{token}', expected: ','")
    return tuple(requirements)


@dataclass(frozen=True)
class FieldTerm:
    path: str
    equal: bool
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        return (fields.get(self.path, "") == self.value) == self.equal


def parse_field_selector(text: str | None, supported: tuple[str, ...], kind_message: str) -> tuple[FieldTerm, ...]:
    """Terms `path=value`, `path==value`, `path!=value` separated by commas.

    kind_message is the error for an unsupported path, with `{path}` in it (pods and custom
    resources word it differently).
    """
    if not text or not text.strip():
        return ()
    terms = []
    for part in re.split(r"(?<!\\),", text):
        match = re.fullmatch(r"\s*([^=!\s]+)\s*(==|!=|=)\s*(.*?)\s*", part)
        if not match:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        path, op, value = match.groups()
        if path not in supported:
            raise SelectorError(kind_message.format(path=path))
        terms.append(FieldTerm(path, op != "!=", value.replace("\\,", ",").replace("\\=", "=")))
    return tuple(terms)


def label_selector_from_spec(
    labels: Mapping[str, str] | None, expressions: list[dict] | None
) -> tuple[Requirement, ...]:
    """A metav1.LabelSelector (matchLabels + matchExpressions), as Chaos Mesh's selectors carry it."""
    requirements = [Requirement(k, "=", (v,)) for k, v in (labels or {}).items()]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expression in expressions or []:
        requirements.append(
            Requirement(expression["key"], operators[expression["operator"]], tuple(expression.get("values") or ()))
        )
    return tuple(requirements)
