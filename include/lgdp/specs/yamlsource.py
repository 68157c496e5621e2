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


# PyYAML's wording, translated for people who edit specs rather than parsers.
_YAML_WORDS = (
    ("found character '\\t' that cannot start any token", "a tab character: indent with spaces, not tabs"),
    ("found a tab character", "a tab character: indent with spaces, not tabs"),
    ("expected <block end>, but found '<block mapping start>'", "the indentation of this line does not line up with the lines above"),
    ("expected <block end>, but found", "the indentation does not line up with the lines above; found"),
    ("found unexpected end of stream", "the file ends too early"),
    ("expected the node content, but found '<stream end>'", "the file ends too early"),
    ("could not determine a constructor for the tag", "this tag is not allowed in a spec:"),
    ("scanning a quoted scalar", "reading the text in quotes"),
    ("mapping values are not allowed here", "a ':' where none is expected (put text containing ': ' in quotes)"),
    ("flow sequence", "list in [brackets]"),
    ("flow mapping", "block in {braces}"),
    ("block mapping", "block of fields"),
    ("block collection", "list or block of fields"),
    ("block sequence", "list"),
)
MAX_NODES = 200_000  # far beyond any real spec; stops alias "bombs" expanding without end


def _words(text: str) -> str:
    for yaml_words, plain in _YAML_WORDS:
        text = text.replace(yaml_words, plain)
    return text


def _syntax_error(exc: yaml.YAMLError) -> YamlSyntaxError:
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    mark = problem_mark or context_mark
    line = mark.line + 1 if mark else 1
    problem = getattr(exc, "problem", None)
    if not problem:
        return YamlSyntaxError(line, f"the file is not valid YAML: {_words(str(exc))}")
    message = f"the file is not valid YAML: {_words(problem)}"
    context = getattr(exc, "context", None)
    if context == "expected a single document in the stream":
        return YamlSyntaxError(line, "the file is not valid YAML: it holds more than one document (remove the '---' line)")
    if context and context_mark is not None and problem_mark is not None and context_mark.line != problem_mark.line:
        message += f" ({_words(context)} that starts on line {context_mark.line + 1})"
    return YamlSyntaxError(line, message)


# libyaml's composer is ~15x faster than PyYAML's pure-Python one (DAG parsing reads every spec);
# on a syntax error we compose again in Python so the message a spec author sees is the same.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: str) -> YamlDoc:
    try:
        node = yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            raise _syntax_error(exc) from None
    doc = YamlDoc(data=None)
    if node is None:
        return doc
    loader = yaml.SafeLoader("")
    try:
        doc.data = _build(node, (), doc, loader, set(), [0])
    except yaml.YAMLError as exc:
        raise _syntax_error(exc) from None
    finally:
        loader.dispose()
    return doc


def _build(
    node: yaml.Node, path: Path_, doc: YamlDoc, loader: yaml.SafeLoader, active: set[int], count: list[int]
) -> Any:
    line = node.start_mark.line + 1
    count[0] += 1
    if count[0] > MAX_NODES:
        raise YamlSyntaxError(line, "the file is too large or repeats an alias (*name) too many times")
    doc.lines.setdefault(path, line)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        if node.tag not in (yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG):
            raise YamlSyntaxError(line, f"the file is not valid for a spec: the tag {node.tag!r} is not allowed")
        if id(node) in active:
            raise YamlSyntaxError(line, "the file is not valid for a spec: an alias (*name) refers to itself")
        active.add(id(node))
        try:
            return _build_collection(node, path, doc, loader, active, count)
        finally:
            active.discard(id(node))
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, TypeError, OverflowError):
        # A value YAML recognises but cannot build, such as the date 2027-02-30: keep the text as
        # written so the model reports it against its field ("... is not a real date").
        return node.value


def _build_collection(
    node: yaml.Node, path: Path_, doc: YamlDoc, loader: yaml.SafeLoader, active: set[int], count: list[int]
) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return [_build(n, (*path, i), doc, loader, active, count) for i, n in enumerate(node.value)]
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise YamlSyntaxError(key_line, "the file is not valid for a spec: a field name must be a single word, not a list or block")
        try:
            key = loader.construct_object(key_node, deep=True)
        except (ValueError, TypeError, OverflowError):
            key = key_node.value
        child = (*path, key)
        if key in out:
            doc.duplicates.append((child, key_line))
        doc.lines[child] = key_line
        out[key] = _build(value_node, child, doc, loader, active, count)
    return out
