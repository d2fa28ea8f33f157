"""Strict YAML for the catalogue and the policy: duplicate keys and runaway aliases are errors."""

from __future__ import annotations

import time

import pytest
import yaml

from chaos_engineering.policy import load_policy
from chaos_engineering.yamlload import MAX_EXPANDED_NODES, StrictYAMLError, load_document, load_documents
from tests.unit.catalogue_support import POLICY_PATH, base_experiment, load

# The line is the issue's own (`line`), not repeated in its message.
DUPLICATE = "key {key!r} is repeated in the same mapping (first on line {first}); YAML would silently keep only the last one: remove one"


def billion_laughs(levels: int = 9) -> str:
    """Ten aliases per level, nine levels: 10^9 strings once expanded, a few hundred bytes written."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


EXPERIMENT_WITH_DUPLICATE = yaml.safe_dump(base_experiment(), sort_keys=False).replace(
    "    mode: one\n", "    mode: one\n    mode: all\n"
)


def test_a_duplicate_key_in_an_experiment_names_file_line_and_key(tmp_path):
    catalogue = load(tmp_path, EXPERIMENT_WITH_DUPLICATE)
    line = EXPERIMENT_WITH_DUPLICATE.splitlines().index("    mode: all") + 1
    assert [(i.file, i.line, i.field, i.rule, i.message) for i in catalogue.issues] == [
        (str(tmp_path / "experiments" / "e0.yaml"), line, "chaos.spec.mode", "duplicate-key", DUPLICATE.format(key="mode", first=line - 1))
    ]
    assert catalogue.experiments == {}


def test_a_duplicate_key_in_the_policy_names_file_line_and_key(tmp_path):
    text = POLICY_PATH.read_text()
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace("  check_interval: 10s\n", "  check_interval: 10s\n  check_interval: 1h\n"))
    line = path.read_text().splitlines().index("  check_interval: 1h") + 1
    policy, issues = load_policy(path)
    assert policy is None
    assert [(i.file, i.line, i.field, i.rule, i.message) for i in issues] == [
        (str(path), line, "safety.check_interval", "duplicate-key", DUPLICATE.format(key="check_interval", first=line - 1))
    ]


@pytest.mark.parametrize(
    ("text", "field", "key", "line", "first"),
    [
        ("a: 1\nb:\n  - {x: 1, x: 2}\n", "b[0].x", "x", 3, 3),
        ("1: one\n1.0: also one\n", "1.0", "1.0", 2, 1),  # the same key once built
        ("base: &b {x: 1}\nm:\n  <<: *b\n  <<: *b\n", "m.<<", "<<", 4, 3),
    ],
    ids=["in-a-flow-mapping-in-a-list", "same-value-spelt-differently", "merge-key-twice"],
)
def test_duplicate_keys_anywhere(text, field, key, line, first):
    with pytest.raises(StrictYAMLError) as raised:
        load_document(text)
    assert (raised.value.rule, raised.value.field, raised.value.line, raised.value.message) == (
        "duplicate-key", field, line, DUPLICATE.format(key=key, first=first)
    )


def test_merge_keys_and_small_aliases_are_fine():
    text = "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\nlist: &l [1, 2]\nagain: *l\n"
    assert load_document(text) == {"base": {"x": 1, "y": 2}, "m": {"x": 3, "y": 2}, "list": [1, 2], "again": [1, 2]}
    assert load_documents("a: 1\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]


# Named at the first anchor whose expansion passes the bound: a4 (111,111 nodes), line 5.
BILLION_LAUGHS = (
    f"aliases expand this document to more than {MAX_EXPANDED_NODES:,} nodes (a 'billion laughs' "
    "document?); write the values out or use fewer nested aliases"
)


def test_a_billion_laughs_experiment_fails_fast(tmp_path):
    started = time.monotonic()
    catalogue = load(tmp_path, billion_laughs())
    assert time.monotonic() - started < 2
    assert [(i.line, i.field, i.rule, i.message) for i in catalogue.issues] == [(5, "a4", "alias-expansion", BILLION_LAUGHS)]


def test_a_billion_laughs_policy_fails_fast(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(billion_laughs())
    started = time.monotonic()
    policy, issues = load_policy(path)
    assert time.monotonic() - started < 2
    assert policy is None
    assert [(i.file, i.line, i.field, i.rule, i.message) for i in issues] == [(str(path), 5, "a4", "alias-expansion", BILLION_LAUGHS)]


def test_a_recursive_alias_is_refused():
    with pytest.raises(StrictYAMLError) as raised:
        load_document("a: &a [1, *a]\n")
    assert (raised.value.rule, raised.value.field, raised.value.line, raised.value.message) == (
        "alias-expansion", "a", 1, "an alias refers to a node that contains it (a recursive document); remove the loop"
    )


def test_aliases_within_the_bound_load():
    # 5 levels of 10: 111,111 nodes expanded would be refused; 4 levels (11,111) are fine.
    assert len(load_document(billion_laughs(levels=4))["a3"]) == 10
    with pytest.raises(StrictYAMLError):
        load_document(billion_laughs(levels=5))
