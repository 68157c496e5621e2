"""Safe YAML reading that remembers where every value came from.

Return owners edit specs by hand; a problem must point at the line they typed. PyYAML's composer
gives us nodes with positions, so we build the plain data and a map from path to line in one pass.
Only ``yaml.SafeLoader`` is used: a spec can never reach code or the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass
class YamlDoc:
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    duplicates: list[tuple[Path_, int]] = field(default_factory=list)

    def line_of(self, path: Path_) -> int:
        """The line of ``path`` or of its nearest ancestor that exists (1-based)."""
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p, 1)


class YamlSyntaxError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def read_yaml(text: str) -> YamlDoc:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlSyntaxError(line, f"the file is not valid YAML: {problem}") from None
    doc = YamlDoc(data=None)
    if node is None:
        return doc
    loader = yaml.SafeLoader("")
    try:
        doc.data = _build(node, (), doc, loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YamlSyntaxError(mark.line + 1 if mark else 1, f"the file is not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return doc


def _build(node: yaml.Node, path: Path_, doc: YamlDoc, loader: yaml.SafeLoader) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            child = (*path, key)
            if key in out:
                doc.duplicates.append((child, key_node.start_mark.line + 1))
            doc.lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, doc, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(n, (*path, i), doc, loader) for i, n in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
