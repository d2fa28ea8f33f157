"""Strict YAML reading for the policy and the catalogue: no duplicate keys, bounded aliases, libyaml's speed."""

from __future__ import annotations

from collections import deque
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# The C parser when PyYAML was built with libyaml (parsing is most of a DAG file's YAML cost);
# construction, and so every check below, is Python either way.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Nodes a document may expand to through its aliases. Our files have hundreds; a "billion
#: laughs" document has 10^9 and would hang every consumer that walks it (validation, dumps).
MAX_EXPANDED_NODES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


class StrictYAMLError(ValueError):
    """Valid YAML that we refuse: `rule` is `duplicate-key` or `alias-expansion`; `field` is the
    dotted path of the offending key (empty for the document), `line` counts from 1."""

    def __init__(self, rule: str, field: str, line: int, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.field = field
        self.line = line
        self.message = message


class _StrictLoader(_BaseLoader):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        # Without an anchor there is no alias, and a document is no bigger than its text: the
        # walk that measures alias expansion is only needed (and only paid) when one is there.
        self.has_anchors = "&" in text
        self.root: Node | None = None
        self.checked: set[int] = set()

    def construct_document(self, node: Node) -> Any:
        self.root, self.checked = node, set()
        if self.has_anchors:
            # On the composed graph, before anything is built: an alias is one shared node there,
            # so even a billion-laughs document is measured in time linear in its text.
            _check_expansion(node)
        return super().construct_document(node)

    def flatten_mapping(self, node: MappingNode) -> None:
        # Every mapping passes here before its merge keys (`<<`) are folded in, which is when
        # its keys are still the ones written: merged keys an explicit key overrides are fine.
        merged = [v for k, v in node.value if k.tag == _MERGE_TAG]
        merged = [m for v in merged for m in (v.value if isinstance(v, SequenceNode) else [v])]
        # The mappings merged in are checked now, while the path to them is still in the document.
        for mapping in [node, *merged]:
            if isinstance(mapping, MappingNode) and id(mapping) not in self.checked:
                self.checked.add(id(mapping))
                self._refuse_duplicates(mapping)
        super().flatten_mapping(node)

    def _refuse_duplicates(self, node: MappingNode) -> None:
        first_line: dict[object, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode):
                continue
            identity = self._key_identity(key_node)
            line = key_node.start_mark.line + 1
            if identity in first_line:
                raise StrictYAMLError(
                    "duplicate-key",
                    _child(_path_to(self.root, node), key_node.value),
                    line,
                    f"line {line}: key {key_node.value!r} is repeated in the same mapping (first on line "
                    f"{first_line[identity]}); YAML would silently keep only the last one: remove one",
                )
            first_line[identity] = line

    def _key_identity(self, node: ScalarNode) -> object:
        """What the key becomes in the built dict: keys that collide there (`1` and `1.0`, `on`
        and `true`) are duplicates even when spelt differently."""
        if node.tag == _STR_TAG:
            return node.value
        if node.tag == _MERGE_TAG:
            return ("<<",)
        try:
            key = self.construct_object(node)
            hash(key)
        except (yaml.YAMLError, TypeError):
            return (node.tag, node.value)  # the constructor reports an unusable key itself
        return key


def load_documents(text: str) -> list[Any]:
    """Every document of `text` (None for an empty one). Raises StrictYAMLError for duplicate
    keys and runaway aliases, yaml.YAMLError for anything that is not YAML."""
    loader = _StrictLoader(text)
    try:
        documents = []
        while loader.check_data():
            documents.append(loader.get_data())
        return documents
    finally:
        loader.dispose()


def load_document(text: str) -> Any:
    """The only document of `text` (None when empty); more than one is a yaml.YAMLError."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _child(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _path_to(root: Node | None, target: Node) -> str:
    """The shortest dotted path to `target` in the document (only computed for an error message)."""
    seen: set[int] = set()
    queue: deque[tuple[Node, str]] = deque([(root, "")] if root is not None else [])
    while queue:
        node, path = queue.popleft()
        if node is target:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            queue.extend((child, f"{path}[{index}]") for index, child in enumerate(node.value))
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                queue += [(key, path), (value, _child(path, key.value if isinstance(key, ScalarNode) else "?"))]
    return ""


def _check_expansion(root: Node) -> None:
    """Refuse a document whose aliases expand it beyond MAX_EXPANDED_NODES, or refer to a node
    that contains them. Iterative (deep nesting must not exhaust Python's stack here) and memoised
    per node: a node reached through many aliases is counted each time but visited once."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[key] = size
            # More nodes than were ever visited: aliases repeat parts of the document.
            if size > MAX_EXPANDED_NODES and size > len(sizes):
                line = node.start_mark.line + 1
                raise StrictYAMLError(
                    "alias-expansion",
                    _path_to(root, node),
                    line,
                    f"line {line}: aliases expand this document to more than {MAX_EXPANDED_NODES:,} nodes "
                    "(a 'billion laughs' document?); write the values out or use fewer nested aliases",
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            line = node.start_mark.line + 1
            raise StrictYAMLError(
                "alias-expansion",
                _path_to(root, node),
                line,
                f"line {line}: an alias refers to a node that contains it (a recursive document); remove the loop",
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack += [(child, False) for child in _children(node) if id(child) not in sizes]
