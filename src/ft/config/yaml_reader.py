"""Read a config file as plain YAML: UTF-8 text, one mapping, no duplicate keys, no Python tags.

PyYAML's `safe_load` already refuses `!!python/...` tags (nothing is ever constructed from
them); this module turns its messages into ones that say what to fix, and refuses what PyYAML
lets through or fails on without saying where: a key given twice (PyYAML keeps the last value
without a word), a key that is not a name (`1:`, `on:`), a whole number too long for Python, an
alias bomb, nesting deeper than Python's recursion limit, a control character (which PyYAML refuses
without saying where). Every problem names a line or a key path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ft.base.errors import ConfigError

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
INT_TAG = "tag:yaml.org,2002:int"
MAX_DIGITS = 4300
"""Python refuses to read longer whole numbers (sys.get_int_max_str_digits)."""
MAX_VALUES = 100_000
"""A config holds a few hundred values; more, once aliases are expanded, is an alias bomb."""


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file; raises ConfigError naming the file and the spot."""
    if not path.exists():
        raise ConfigError([f"{path}: no such file"], hint="check the path of the config file")
    if path.is_dir():
        raise ConfigError([f"{path}: is a folder, not a YAML config file"])
    source = str(path)
    data = parse_yaml(decode_utf8(path.read_bytes(), source), source)
    if data is None:
        raise ConfigError(
            ["the file holds no keys (it is empty or only comments)"],
            source=source,
            hint="start from a file in configs/",
        )
    if not isinstance(data, dict):
        raise ConfigError(
            [f"the top level is {_kind(data)}, expected a mapping of keys (key: value lines)"],
            source=source,
        )
    return data


def decode_utf8(raw: bytes, source: str) -> str:
    if raw.startswith(UTF16_BOMS):
        raise ConfigError(["the file is UTF-16 text, not UTF-8"], source=source, hint="save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(
            [
                f"line {line}, column {column}: byte 0x{raw[err.start]:02x} (offset {err.start}) "
                "is not UTF-8 text"
            ],
            source=source,
            hint="save the file as UTF-8",
        ) from None


def parse_yaml(text: str, source: str) -> Any:
    """The one document in `text` (None when empty), refusing duplicate keys and unknown tags."""
    try:
        # The constructor already reads the whole text and refuses control characters.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as err:
        raise ConfigError([_unreadable_character(text, err)], source=source) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, float] = {}
        if _expanded_size(node, sizes) > MAX_VALUES:
            raise ConfigError([_too_many_values(len(sizes))], source=source)
        problems = list(_key_problems(node, "", set()))
        if problems:
            raise ConfigError(problems, source=source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        raise ConfigError([_yaml_problem(err)], source=source) from None
    except RecursionError:
        raise ConfigError(["the YAML is nested too deeply to read"], source=source) from None
    finally:
        loader.dispose()


def _too_many_values(written: int) -> str:
    """Too many values as written (a generated file), or only once the aliases are expanded."""
    if written > MAX_VALUES:
        return f"the config holds {written:,} values; a config holds a few hundred (at most {MAX_VALUES:,})"
    expands = f"anchors and aliases (&name, *name) expand to more than {MAX_VALUES:,} values"
    return expands + " or refer to themselves"


def _expanded_size(node: yaml.Node, sizes: dict[int, float]) -> float:
    """How many values the document holds once every alias is expanded: an alias bomb (the YAML
    "billion laughs") holds billions, an alias inside its own anchor infinitely many."""
    key = id(node)
    if key not in sizes:
        sizes[key] = math.inf  # while counting its children: met again, the alias is recursive
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        sizes[key] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[key]


def _key_problems(node: yaml.Node, path: str, seen: set[int]) -> Iterator[str]:
    """A problem line for every key given twice in one mapping (`lora_r: given twice (lines 3 and 7)`),
    every key that YAML reads as something other than text (`1:`, `true:`), and every whole number
    too long for Python to read (which PyYAML would fail on without saying where)."""
    if id(node) in seen:  # an alias of a node already checked
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode) and node.tag == INT_TAG and len(node.value) > MAX_DIGITS:
        yield f"{path or '(top level)'}: a number with {len(node.value):,} digits"
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _key_problems(item, f"{path}[{index}]", seen)
    elif isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != STR_TAG:
                where = f"{path}: " if path else ""
                yield f"{where}line {line}: a key must be a name, not {_node_kind(key_node)}"
                continue
            key_path = f"{path}.{key_node.value}" if path else key_node.value
            if key_node.value in first_line:
                first = first_line[key_node.value]
                lines = f"both on line {line}" if first == line else f"lines {first} and {line}"
                yield f"{key_path}: given twice ({lines}); YAML would keep only the last"
            first_line.setdefault(key_node.value, line)
            yield from _key_problems(value_node, key_path, seen)


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        kinds = {
            "int": "a number",
            "float": "a number",
            "bool": "a boolean",
            "null": "null",
            "timestamp": "a date",
        }
        kind = kinds.get(node.tag.rsplit(":", 1)[-1], node.tag.replace("tag:yaml.org,2002:", "!!"))
        return f"{node.value!r} (YAML reads it as {kind}; quote it if it is meant as a name)"
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _unreadable_character(text: str, err: yaml.reader.ReaderError) -> str:
    """`line 3, column 14: a control character (0x07) YAML does not allow`."""
    line = text.count("\n", 0, err.position) + 1
    column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
    code = err.character if isinstance(err.character, int) else ord(str(err.character))
    kind = "a control character" if code < 0x20 or 0x7F <= code <= 0x9F else "a character"
    return f"line {line}, column {column}: {kind} (0x{code:02x}) YAML does not allow (remove it)"


def _yaml_problem(err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
    problem = err.problem or "not valid YAML"
    if "'\\t'" in problem:
        if _indents(mark):
            return f"{where}: a tab character; YAML does not allow tabs for indentation (use spaces)"
        return f"{where}: a tab character; YAML does not allow tabs here: use spaces (or quote a value that holds a tab)"
    if isinstance(err, yaml.constructor.ConstructorError) and "constructor for the tag" in problem:
        tag = problem.rsplit(" ", 1)[-1].strip("'").replace("tag:yaml.org,2002:", "!!")
        if tag.startswith("!!python/"):
            return f"{where}: the tag {tag!r} is not allowed: ft reads plain YAML and never builds Python objects"
        return f"{where}: unknown YAML tag {tag!r}: ft reads plain YAML (no tags)"
    if isinstance(err, yaml.composer.ComposerError) and "another document" in problem:
        return f"{where}: a second YAML document (---): a config is one document"
    if "expected <block end>" in problem:
        return f"{where}: the indentation does not line up with the lines above (YAML syntax error)"
    return f"{where}: YAML syntax error: {problem}{_context(err)}"


def _indents(mark: yaml.Mark | None) -> bool:
    """Whether only spaces and tabs come before `mark` on its line (an indentation)."""
    buffer, pointer = getattr(mark, "buffer", None), getattr(mark, "pointer", None)
    if not isinstance(buffer, str) or not isinstance(pointer, int):
        return True
    return not buffer[buffer.rfind("\n", 0, pointer) + 1 : pointer].strip(" \t")


def _context(err: yaml.MarkedYAMLError) -> str:
    """`(while scanning a quoted scalar at line 3, column 12)`: where the broken construct began."""
    if not err.context:
        return ""
    mark = err.context_mark
    began = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f" ({err.context}{began})"


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"text ({value[:30]!r})"
    names = {list: "a list", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)
