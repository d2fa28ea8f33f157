"""Strict YAML reading for the policy and the catalogue: no duplicate keys, bounded aliases, libyaml's speed."""

from __future__ import annotations

import reprlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# The C parser when PyYAML was built with libyaml (parsing is most of a DAG file's YAML cost);
# construction, and so every check below, is Python either way.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Nodes a document may expand to through its aliases. Our files have hundreds; a "billion
#: laughs" document has 10^9 and would hang every consumer that walks it (validation, dumps).
MAX_EXPANDED_NODES = 100_000

_shown = reprlib.Repr()
_shown.maxstring = 60

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


class YAMLFileError(ValueError):
    """A file we cannot take as YAML: `rule` is the rule it breaks, `field` the dotted path of the
    offending key (empty for the file), `line` counts from 1 (None when the file has no line for it)."""

    def __init__(self, rule: str, field: str, line: int | None, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.field = field
        self.line = line
        self.message = message


class StrictYAMLError(YAMLFileError):
    """Valid YAML that we refuse: `rule` is `duplicate-key` or `alias-expansion`."""


#: Said of a file with no YAML document in it (nothing, or only comments and blank lines).
EMPTY_FILE = "the file is empty"


class _StrictLoader(_BaseLoader):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        # Without an anchor there is no alias, and a document is no bigger than its text: the
        # walk that measures alias expansion is only needed (and only paid) when one is there.
        self.has_anchors = "&" in text
        self.root: Node | None = None
        self.roots: list[Node] = []
        self.checked: set[int] = set()

    def construct_document(self, node: Node) -> Any:
        self.root, self.checked = node, set()
        self.roots.append(node)
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
                    f"key {key_node.value!r} is repeated in the same mapping (first on line "
                    f"{first_line[identity]}); YAML would silently keep only the last one: remove one",
                )
            first_line[identity] = line

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, AttributeError, LookupError) as exc:
            if isinstance(exc, YAMLFileError):
                raise
            # A tag the value does not fit (`!!int x`, `!!bool x`, `!!timestamp x`): PyYAML's
            # constructors raise bare Python errors, which would escape every caller's YAML check.
            what = _shown.repr(node.value) if isinstance(node, ScalarNode) else "this value"
            why = f": {exc}" if isinstance(exc, ValueError) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"{what} cannot be read as !!{node.tag.rsplit(':', 1)[-1]}{why}", node.start_mark
            ) from None

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
    return [document.data for document in _documents(text)]


def _documents(text: str) -> list[Document]:
    loader = _StrictLoader(text)
    try:
        data = []
        while loader.check_data():
            data.append(loader.get_data())
        return [Document(d, node, text.count("\n") + 1) for d, node in zip(data, loader.roots)]
    finally:
        loader.dispose()


def load_document(text: str) -> Any:
    """The only document of `text` (None when empty); more than one is a yaml.YAMLError."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@dataclass(frozen=True)
class Document:
    """One YAML document of a file: the data built from it, and its nodes for `line_of`."""

    data: Any
    node: Node
    # The file's last line: PyYAML marks an empty document after a byte-order mark one line past it.
    last_line: int | None = None

    @property
    def line(self) -> int:
        return self._within(self.node.start_mark.line + 1)

    def _within(self, line: int) -> int:
        return min(line, self.last_line) if self.last_line is not None else line

    def line_of(self, field: str) -> int | None:
        """The line (from 1) of the key or item at `field`, a dotted path with items and map keys
        in brackets (`chaos.spec.externalTargets[2]`, `thresholds[latency].limit`); where the path
        goes on past what the document holds (a missing key), the line of the last part it has.
        None for the whole document."""
        node, rest, line = self.node, field, None
        while rest:
            found, rest = _step(node, rest)
            if found is None:
                break
            at, node = found
            line = self._within(at.start_mark.line + 1)
        return line


def read_documents(path: Path) -> list[Document]:
    """Every document of the file at `path` (empty ones hold None). Raises OSError when the file
    cannot be read, YAMLFileError when it is not UTF-8, not YAML, or YAML we refuse."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise YAMLFileError(
            "yaml", "", line, f"the file is not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {column} is not valid UTF-8; save the file as UTF-8"
        ) from None
    try:
        return _documents(text)
    except yaml.YAMLError as exc:
        raise _not_yaml(exc, text, path) from None


def read_document(path: Path) -> Document | None:
    """The only document of the file at `path` (None for an empty file), as `read_documents`."""
    documents = read_documents(path)
    if len(documents) > 1:
        raise YAMLFileError(
            "yaml", "", documents[1].line,
            "a second YAML document starts here and this file is one document; remove it (and the '---' before it)",
        )
    return documents[0] if documents else None


def _not_yaml(exc: yaml.YAMLError, text: str, path: Path) -> YAMLFileError:
    """What libyaml reports over several lines about `<unicode string>`, in one sentence at its line."""
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        return YAMLFileError(
            "yaml", "", line, f"not valid YAML at column {column}: character #x{exc.character:04X} is refused ({exc.reason}); remove it"
        )
    if isinstance(exc, yaml.MarkedYAMLError) and (exc.problem or exc.context):
        mark = exc.problem_mark or exc.context_mark
        said = exc.problem or exc.context
        if exc.problem and exc.context:
            said += f", {exc.context}"
            if exc.context_mark is not None:
                said += f" started at {_place(exc.context_mark, text)}"
        if mark is None:
            return YAMLFileError("yaml", "", None, f"not valid YAML: {said}")
        # The end of the file is on its last line with text, wherever libyaml puts it (on the line
        # after a final line break, or after the last line when there is none).
        line = min(mark.line + 1, text.rstrip("\n").count("\n") + 1)
        where = "the end of the file" if _at_end(mark, text) else f"column {mark.column + 1}"
        return YAMLFileError("yaml", "", line, f"not valid YAML at {where}: {said}")
    said = " ".join(str(exc).replace('"<unicode string>"', str(path)).split())
    return YAMLFileError("yaml", "", None, f"not valid YAML: {said}")


def _at_end(mark: yaml.Mark, text: str) -> bool:
    last = text.rsplit("\n", 1)[-1]
    return (mark.line, mark.column) >= (text.count("\n"), len(last))


def _place(mark: yaml.Mark, text: str) -> str:
    return "the end of the file" if _at_end(mark, text) else f"line {mark.line + 1}, column {mark.column + 1}"


def _step(node: Node, rest: str) -> tuple[tuple[Node, Node] | None, str]:
    """The first part of the path `rest` in `node`: (the node that marks it, the node under it),
    and the path after it; (None, rest) when `node` has no such part."""
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            return None, rest
        part, after = rest[1:end], rest[end + 1 :]
        after = after[1:] if after.startswith(".") else after
        if isinstance(node, SequenceNode):
            index = int(part) if part.isdigit() else len(node.value)
            return ((node.value[index], node.value[index]) if index < len(node.value) else None), after
        matches = [(k, v) for k, v in _pairs(node) if k.value == part]
    else:
        # Keys may hold dots (`app.kubernetes.io/name`): the longest key the path goes on from wins.
        matches = sorted(
            ((k, v) for k, v in _pairs(node) if rest == k.value or rest.startswith((f"{k.value}.", f"{k.value}["))),
            key=lambda pair: len(pair[0].value),
        )
        after = rest[len(matches[-1][0].value) :].removeprefix(".") if matches else rest
    # The last of equal keys: a merged key (`<<`) comes before the one that overrides it.
    return (matches[-1] if matches else None), after


def _pairs(node: Node) -> list[tuple[ScalarNode, Node]]:
    return [(k, v) for k, v in node.value if isinstance(k, ScalarNode)] if isinstance(node, MappingNode) else []


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
                    f"aliases expand this document to more than {MAX_EXPANDED_NODES:,} nodes "
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
                "an alias refers to a node that contains it (a recursive document); remove the loop",
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack += [(child, False) for child in _children(node) if id(child) not in sizes]
