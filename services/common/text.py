"""Control characters in text from outside, refused wherever text enters (issue 17, finding 5).

Postgres refuses U+0000 in text (asyncpg then fails with an internal message), and other control
characters in names, subjects or codes corrupt what recipients display, log or save. Tabs and line
breaks are allowed in free text, since a document's body or a status description has paragraphs;
fields that must be one line (attachment names, media types) refuse them too.
"""

from __future__ import annotations

import re

# C0 controls but tab, line feed and carriage return; DEL; C1 controls.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# The same with tabs and line breaks (Unicode's line and paragraph separators included).
_CONTROL_OR_BREAK = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def control_character(text: str, *, one_line: bool = False) -> str | None:
    """The first control character in `text`, as "U+XXXX", or None. `one_line` also counts tabs
    and line breaks."""
    found = (_CONTROL_OR_BREAK if one_line else _CONTROL).search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"
