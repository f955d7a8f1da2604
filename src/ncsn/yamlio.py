"""Reading YAML that a user (or an attacker) wrote: safe tags only, bounded, no duplicate keys.

:func:`load_yaml` is PyYAML's ``safe_load`` with four more rules:

- **YAML 1.2 numbers**: ``1e-3`` is the float 0.001 (PyYAML follows YAML 1.1, where a float
  needs a dot and a signed exponent, and reads ``1e-3`` as the string ``'1e-3'``); this is
  the one place ncsn deals with that quirk;

- **bounded aliases**: anchors and aliases may be used, but the document expanded (every alias
  counted as a full copy of what it names) may hold at most :data:`MAX_SIZE` characters, so
  a "billion laughs" file of a few hundred bytes is refused instead of growing to gigabytes
  when it is printed, compared or saved;
- **no recursion**: an alias inside the node it names (``&a [*a]``) is refused, and so is
  nesting deeper than :data:`MAX_DEPTH` levels;
- **no duplicate keys**: ``lr: 1e-3`` twice in one mapping is an error naming both lines,
  not a silent "last one wins". (Keys brought in by a ``<<`` merge may still be overridden.)

Errors are :class:`yaml.YAMLError` subclasses with a position, like PyYAML's own.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["MAX_SIZE", "MAX_DEPTH", "BoundedSafeLoader", "SafeDumper12", "load_yaml", "dump_yaml"]

MAX_SIZE = 1_000_000  # characters (plus one per node) of the expanded document
MAX_DEPTH = 50
_MERGE_TAG = "tag:yaml.org,2002:merge"
_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.1's float forms with the exponent's dot and sign made optional (YAML 1.2 style)
_FLOAT = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


def _resolvers_12() -> dict[str, list]:
    """PyYAML's implicit resolvers with its YAML 1.1 float rule replaced by :data:`_FLOAT`."""
    out = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _FLOAT_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    for first in "-+0123456789.":
        out.setdefault(first, []).append((_FLOAT_TAG, _FLOAT))
    return out


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 floats, bounded alias expansion and duplicate keys
    refused."""

    yaml_implicit_resolvers = _resolvers_12()

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) -> size of its full expansion
        self._total = 0  # size of the document so far, aliases expanded
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # noqa: D102
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:  # its node is still being composed: it contains the alias
                raise ComposerError(
                    None, None, "an alias refers to the node that contains it (recursive)", mark
                )
            self._add(size, mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        own = 1 + (len(node.value) if isinstance(node, ScalarNode) else 0)
        self._sizes[id(node)] = own + sum(self._sizes[id(c)] for c in _children(node))
        self._add(own, mark)
        return node

    def _add(self, n: int, mark: Any) -> None:
        self._total += n
        if self._total > MAX_SIZE:
            raise ComposerError(
                None,
                None,
                f"the document grows beyond {MAX_SIZE:,} characters when its aliases are "
                "expanded (a YAML bomb?); write the values out or use fewer aliases",
                mark,
            )

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:  # noqa: D102
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: the base class reports it
                continue
            if first is not None:
                raise ConstructorError(
                    f"while reading the mapping at line {node.start_mark.line + 1}",
                    None,
                    f"duplicate key {key!r} (first at line {first.line + 1}); keep only one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class SafeDumper12(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes strings :class:`BoundedSafeLoader` would read as floats
    (``'1e-3'``), so text written by :func:`dump_yaml` loads back unchanged."""

    yaml_implicit_resolvers = _resolvers_12()


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml(text: str) -> Any:
    """Parse one YAML document with :class:`BoundedSafeLoader`.

    Args:
        text: The YAML text.

    Returns:
        Plain Python data (dicts, lists, str, int, float, bool, None, dates).

    Raises:
        yaml.YAMLError: Invalid YAML, an alias bomb, recursive aliases or a duplicate key.
    """
    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def dump_yaml(data: Any) -> str:
    """``yaml.safe_dump(data, sort_keys=False)`` whose output :func:`load_yaml` reads back as
    ``data`` (strings that look like YAML 1.2 floats are quoted)."""
    return yaml.dump(data, Dumper=SafeDumper12, sort_keys=False)
