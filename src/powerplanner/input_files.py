"""Reading a user's input file (config, scenario, observation, profile, trace) into one error line per failure.

Every file the user names fails the same few ways (missing, unreadable, bad syntax) and can be hostile in the
same few ways (a device such as ``/dev/zero``, a FIFO, a huge file, nesting deep enough to exhaust the stack,
an alias bomb, a key given twice of which the parser would silently keep the last). Those limits live here once
(docs/configuration.md, "Input files"); the wording of the fix is the caller's, and so is the
:class:`~powerplanner.errors.UserError` subclass raised, so each command keeps its own messages.

- :func:`open_input` opens a regular file of at most ``max_bytes`` without blocking (a FIFO is refused, not
  waited on); :func:`read_text` reads it whole as UTF-8.
- :func:`loads_yaml` / :func:`loads_json` parse a text with a depth limit, duplicate keys rejected (with their
  line) and, for YAML, aliases bounded by the number of values they expand to; they raise
  :class:`DocumentProblem` (message, line, column), which :func:`read_yaml` / :func:`read_json` turn into the
  caller's error and a trace reader into one problem of its line.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from powerplanner.errors import UserError

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""Largest config, scenario, observation or profile document: a Kubernetes ConfigMap holds at most 1 MiB and
the largest profile (Dynamo's raw data as JSON) is a few MiB; more is the wrong file."""

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists: no input of ours needs more than 5 levels; unbounded nesting ends in a
RecursionError (or a C stack overflow) inside the parser."""

MAX_VALUES = 1_000_000
"""Most values (mappings, lists, scalars) one YAML document may expand to once its aliases are followed: a
few-line alias bomb expands to billions and would hang validation."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MIB = 1024 * 1024


class DocumentProblem(Exception):
    """One problem with a document's text: ``message`` says what and how to fix it; ``line``/``column``
    (1-based) say where when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def where(self) -> str:
        """``line L, column C: `` (or less when unknown)."""
        if self.line is None:
            return ""
        return f"line {self.line}, column {self.column}: " if self.column is not None else f"line {self.line}: "


# ----------------------------------------------------------------------------------------------------------
# Files


def open_input(path: Path, error: type[UserError], *, not_found: str, what: str,
               max_bytes: int = MAX_DOCUMENT_BYTES) -> BinaryIO:
    """The regular file at ``path`` opened for binary reading, at most ``max_bytes`` long.

    Opened non-blocking and checked on the open descriptor (no race with a rename): a FIFO would block the
    reader forever and a device such as ``/dev/zero`` never ends, so both are refused, as is a directory.
    Raises ``error`` with one line: ``<path>: <not_found>`` when it does not exist, else what is wrong.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path}: {not_found}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory; pass the {what} itself") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror}); check the path and permissions") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{path}: is a directory; pass the {what} itself")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: not a regular file (a device, FIFO or socket); save the {what} to a file and "
                        "pass that")
        if info.st_size > max_bytes:
            raise error(_too_large(path, max_bytes))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _too_large(path: Path, max_bytes: int) -> str:
    return (f"{path}: larger than {max_bytes / _MIB:g} MiB, the most this input may hold; check that it is the "
            "right file")


def read_text(path: Path, error: type[UserError], *, not_found: str, what: str,
              max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """The file's text (UTF-8, universal newlines), refused with one ``error`` line when missing, unreadable,
    not a regular file, over ``max_bytes`` or not UTF-8 (see :func:`open_input`)."""
    with open_input(path, error, not_found=not_found, what=what, max_bytes=max_bytes) as handle:
        try:
            data = handle.read(max_bytes + 1)  # a file that grew since fstat (or /proc) still stops here
        except OSError as exc:
            raise error(f"{path}: cannot read {what} ({exc.strerror}); check the path and permissions") from None
    if len(data) > max_bytes:
        raise error(_too_large(path, max_bytes))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the {what} as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ----------------------------------------------------------------------------------------------------------
# YAML


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader (pure Python: its parser keeps explicit stacks, only the composer recurses), with
    the composer's recursion cut at ``max_depth`` collections."""

    def __init__(self, stream: str, max_depth: int) -> None:
        super().__init__(stream)
        self._depth = 0
        self._max_depth = max_depth

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        collection = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if collection:
            self._depth += 1
            if self._depth > self._max_depth:
                mark = self.peek_event().start_mark
                raise DocumentProblem(_too_deep(self._max_depth), mark.line + 1, mark.column + 1)
        try:
            return super().compose_node(parent, index)
        finally:
            if collection:
                self._depth -= 1


_BoundedLoader.add_implicit_resolver(  # YAML 1.2 floats: PyYAML (YAML 1.1) reads `1e-9` and `2.5e3` as strings
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _too_deep(max_depth: int) -> str:
    return f"nested more than {max_depth} levels deep; no input needs that many, flatten the document"


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _check_duplicate_keys(node: MappingNode) -> None:
    seen: dict[tuple[str, str], Node] = {}
    for key, _ in node.value:
        if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
            continue  # complex keys are the constructor's; `<<` merges may be overridden on purpose
        ident = (key.tag, key.value)
        first = seen.get(ident)
        if first is not None:
            raise DocumentProblem(
                f"duplicate key {key.value!r:.60} (first at line {first.start_mark.line + 1}); a parser keeps only "
                "one of them, so delete the other", key.start_mark.line + 1, key.start_mark.column + 1)
        seen[ident] = key


def _check_graph(root: Node, max_depth: int, max_values: int) -> None:
    """Duplicate keys, and the depth and number of values the node graph expands to once aliases are followed
    (aliases share nodes, so each node is visited once; a recursive alias is a cycle)."""
    height: dict[int, int] = {}
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        line = node.start_mark.line + 1
        if finished:
            children = _children(node)
            height[key] = 0 if isinstance(node, ScalarNode) else 1 + max((height[id(c)] for c in children), default=0)
            size[key] = 1 + sum(size[id(c)] for c in children)
            on_path.discard(key)
            if height[key] > max_depth:
                raise DocumentProblem(_too_deep(max_depth) + " (its aliases included)", line)
            if size[key] > max_values:
                raise DocumentProblem(f"expands to more than {max_values:,} values once its aliases are followed; "
                                      "write the values out instead of nesting aliases", line)
            continue
        if key in height:
            continue
        if key in on_path:
            raise DocumentProblem("an alias refers to a node that contains it (a recursive structure); remove it",
                                  line)
        on_path.add(key)
        stack.append((node, True))
        if isinstance(node, MappingNode):
            _check_duplicate_keys(node)
        stack.extend((child, False) for child in _children(node) if id(child) not in height)


def loads_yaml(text: str, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> Any:
    """One YAML document (``None`` when empty), or :class:`DocumentProblem`: bad syntax, more than one
    document, nesting over ``max_depth``, a duplicate key, aliases expanding past ``max_values``, a value the
    safe constructor refuses (e.g. an integer of thousands of digits)."""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text, max_depth)  # its reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, max_depth, max_values)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        raise DocumentProblem(f"invalid YAML ({problem}); fix the syntax", line, column) from None
    except (ValueError, OverflowError, TypeError) as exc:  # from a constructor: digits limit, bad timestamp
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(";")[0]
        raise DocumentProblem(f"invalid YAML value ({reason:.120}); fix the value") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml(path: Path, error: type[UserError], *, not_found: str, what: str, empty_is_mapping: bool = True,
              max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """Parse a YAML file with :func:`loads_yaml` (an empty file is ``{}``, or ``None`` with
    ``empty_is_mapping=False`` for a caller that says "empty file" itself); every problem is one ``error``
    line naming the file, the line and column, and the fix."""
    text = read_text(path, error, not_found=not_found, what=what, max_bytes=max_bytes)
    try:
        data = loads_yaml(text)
    except DocumentProblem as exc:
        raise error(f"{path}: {exc.where()}{exc.message}") from None
    return {} if data is None and empty_is_mapping else data


# ----------------------------------------------------------------------------------------------------------
# JSON

_JSON_TOKEN = re.compile(r'(?P<string>"(?:[^"\\\n]|\\.)*(?P<closed>")?)|(?P<mark>[\[\]{}:])')


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _line_column(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _scan_json(text: str, max_depth: int, *, duplicates: bool) -> None:
    """Walk the structure of ``text`` without building it: raise :class:`DocumentProblem` at the first bracket
    deeper than ``max_depth`` or (``duplicates``) the first key an object repeats. Stops quietly where the text
    is not JSON (an unterminated string, an unmatched bracket): the parser then says what is wrong."""
    frames: list[dict[str, int] | None] = []  # per open bracket: an object's keys and where each is
    previous: re.Match[str] | None = None
    for token in _JSON_TOKEN.finditer(text):
        kind = token.group("mark")
        if kind is None:
            if token.group("closed") is None:
                return  # an unterminated string
        elif kind in ("[", "{"):
            frames.append({} if kind == "{" else None)
            if len(frames) > max_depth:
                raise DocumentProblem(_too_deep(max_depth), *_line_column(text, token.start()))
        elif kind in ("]", "}"):
            if not frames:
                return
            frames.pop()
        else:  # ":" after a string in an object: that string is a key
            keys = frames[-1] if frames else None
            if duplicates and keys is not None and previous is not None and previous.group("string") is not None:
                try:
                    name = json.loads(previous.group())
                except ValueError:
                    return
                if name in keys:
                    first = _line_column(text, keys[name])[0]
                    raise DocumentProblem(f"duplicate key {name!r:.60} (first at line {first}); a parser keeps only "
                                          "one of them, so delete the other", *_line_column(text, previous.start()))
                keys[name] = previous.start()
        previous = token


def loads_json(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """One JSON value, or :class:`DocumentProblem`: bad syntax, nesting over ``max_depth`` (checked before the
    recursive parser sees it), a key an object repeats, a number Python refuses (thousands of digits)."""
    if text.count("[") + text.count("{") > max_depth:  # cheap bound: a shallow text skips the scan
        _scan_json(text, max_depth, duplicates=False)
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as dup:
        _scan_json(text, max_depth, duplicates=True)
        raise DocumentProblem(f"duplicate key {dup.key!r:.60}; a parser keeps only one of them, so delete the "
                              "other") from None
    except json.JSONDecodeError as exc:
        raise DocumentProblem(f"invalid JSON ({exc.msg}); fix the syntax", exc.lineno, exc.colno) from None
    except (ValueError, RecursionError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(";")[0]
        raise DocumentProblem(f"invalid JSON ({reason:.120}); fix the value") from None


def read_json(path: Path, error: type[UserError], *, not_found: str, what: str,
              max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """Parse a JSON file with :func:`loads_json`; every problem is one ``error`` line naming the file, the line
    and column, and the fix."""
    text = read_text(path, error, not_found=not_found, what=what, max_bytes=max_bytes)
    try:
        return loads_json(text)
    except DocumentProblem as exc:
        raise error(f"{path}: {exc.where()}{exc.message}") from None
