"""Text in and out: reading JSON that may hold each key once, and showing names safely.

Every reader of a user's JSON (Pod manifests, machine descriptions, a state directory's
``pymm-config.json``) goes through :func:`json_loads`, and every printed pod uid, container,
node name or path through :func:`printable`.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from pymm import _engine

__all__ = ["json_loads", "printable"]


def json_loads(text: str) -> Any:
    """:func:`json.loads`, except that a key given twice in one object raises
    :class:`json.JSONDecodeError` at the second one (Python and Go keep the last silently, so
    ``limits: {memory: 1Gi, memory: 100Gi}`` would reserve 100Gi; kubectl refuses it)."""
    doc = json.loads(text)
    # The engine's scan finds a key given twice in a microsecond; a Python hook on every
    # object would double the cost of reading each manifest the agent is sent.
    found = _engine.json_duplicate_key(text)
    if found is not None:
        key, line, column = found
        raise json.JSONDecodeError(
            f"key {key!r} is given twice in one object", text, _offset(text, line, column)
        )
    return doc


def _offset(text: str, line: int, column: int) -> int:
    """The character offset of a 1-based line and byte column (serde_json counts bytes)."""
    lines = text.split("\n")
    before = sum(len(row) + 1 for row in lines[: line - 1])
    row = lines[line - 1] if line - 1 < len(lines) else ""
    head = row.encode()[: max(column - 1, 0)].decode(errors="ignore")
    return before + len(head)


#: Unicode categories that show nothing of their own, or move what follows: control (a
#: newline forges an output line, an escape sequence restyles the terminal), format (bidi
#: overrides reorder a line, zero-width characters hide), line and paragraph separators,
#: surrogates and unassigned code points.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"})


def printable(text: str) -> str:
    """``text`` with every character that could forge or hide output shown as an escape
    (``\\n``, ``\\x1b``, ``\\u202e``); anything else, non-ASCII letters included, unchanged.

    >>> printable("pod-1\\nadmitted root: 999 GiB")
    'pod-1\\\\nadmitted root: 999 GiB'
    """
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable() or unicodedata.category(c) not in _HIDDEN:
            out.append(c)
        elif c in "\n\t\r":
            out.append(repr(c)[1:-1])
        elif ord(c) < 0x100:
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) < 0x10000:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    return "".join(out)
