"""Stored text on the terminal: data, never markup or control codes.

A persona, a task name, a file name or an error message can hold rich markup (``[bold red]``,
``[/dim]``) or terminal control sequences (``ESC ]0;title BEL`` retitles the window, ``ESC [2J`` clears
it). Everything printed from the store or from the user's files goes through ``plain`` (for rich
``Text`` and table cells) or ``markup_safe`` (for text inside a markup string).
"""

from __future__ import annotations

import re

from rich.markup import escape
from rich.text import Text

# Whole escape sequences first (so no "]0;title" is left behind), then any control character left:
# OSC ... BEL/ST, CSI ... final byte, ESC + one character; C0 except tab and newline, DEL, C1.
_SEQUENCES = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b\[[0-?]*[ -/]*[@-~]?|\x9b[0-?]*[ -/]*[@-~]?|\x1b.?", re.S)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(value: object) -> str:
    """The value as text with every terminal control sequence and control character removed."""
    return _CONTROLS.sub("", _SEQUENCES.sub("", str(value)))


def markup_safe(value: object) -> str:
    """``plain`` text escaped for use inside a rich markup string."""
    return escape(plain(value))


def cell(value: object) -> Text:
    """A table cell that shows the value as it is: rich does not read markup in a ``Text``."""
    return Text(plain(value))
