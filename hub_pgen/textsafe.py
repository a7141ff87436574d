"""Text from the data, the model or a server, made safe for the place it is shown.

Skill names, task strings, dialogues, raw answers, file names and ids a server sends are data: none
of it may act on the place it lands. Each sink has one function here, and every writer of that sink
uses it:

- a terminal or a CI log (stdout, stderr, the logging handler, rich): :func:`for_terminal` shows
  control characters as visible escapes (``\\x1b``, ``\\u202e``), so an answer cannot clear the
  screen, set the window title, move the cursor, or reorder a line with bidi controls; :func:`inline`
  also escapes line breaks, for a value inside a one-line message (a skill name in a warning cannot
  forge a log line, or a GitHub Actions ``::workflow command::``). :func:`say` is ``print`` through
  :func:`for_terminal`; :func:`json_text` is ``--json`` output (ASCII only, so valid and inert).
- Markdown (the dataset card, the Actions job summary): :func:`for_markdown` for text inside a line,
  :func:`for_markdown_cell` for a table cell, :func:`for_markdown_code` for an inline code span.
  No image, link, autolink, HTML tag, entity, emphasis or block marker can come out of the text.
- any encoded output (files, parquet, the review page): :func:`well_formed` replaces lone UTF-16
  surrogates (JSON ``"\\ud800"`` decodes to one), which UTF-8 cannot encode, by U+FFFD.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any

# C0 controls but tab and newline, DEL, C1, the bidi controls (embeddings, overrides, isolates, marks),
# the line/paragraph separators some log viewers break on, and surrogates (unencodable: print would raise)
_TERMINAL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                       "\u2066-\u2069\ud800-\udfff]")
_INLINE = re.compile(_TERMINAL.pattern[:-1] + "\t\n]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def for_terminal(text: object) -> str:
    """``text`` with every control character shown as an escape; newlines and tabs kept."""
    s = text if isinstance(text, str) else str(text)
    return _TERMINAL.sub(_escape, s)


def inline(text: object) -> str:
    """:func:`for_terminal`, with newlines and tabs escaped too: for a value inside a one-line message."""
    s = text if isinstance(text, str) else str(text)
    return _INLINE.sub(_escape, s)


def say(*values: object, sep: str = " ", end: str = "\n", file: Any = None, flush: bool = False) -> None:
    """``print``, with each value through :func:`for_terminal` (hub-pgen's prints all go through it)."""
    print(*(for_terminal(v) for v in values), sep=sep, end=end, file=file if file is not None else sys.stdout,
          flush=flush)


def json_text(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` for stdout: ASCII only (every control, bidi and non-ASCII character a ``\\u``
    escape, DEL too, which JSON leaves raw), so it is valid JSON and inert on a terminal."""
    kwargs["ensure_ascii"] = True
    return json.dumps(obj, **kwargs).replace("\x7f", "\\u007f")


# --- encoded output ----------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogate(text: str) -> bool:
    # an ASCII string (most text, and every JSON line ensure_ascii wrote) says so at no cost (CPython
    # keeps the flag): no regex scan
    return not text.isascii() and _SURROGATE.search(text) is not None


def well_formed(text: str) -> str:
    """``text`` with each lone UTF-16 surrogate replaced by U+FFFD (a pair written as two halves is
    joined), so that it encodes as UTF-8. Text without any is returned as it is."""
    if not has_surrogate(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def digest(*texts: str, size: int = 16) -> bytes:
    """A BLAKE2b digest of ``size`` bytes of the texts, each length-prefixed (("ab", "c") and ("a", "bc")
    differ), lone surrogates included: a text's stand-in where holding it costs too much (16 bytes: two
    texts share one with odds of ~1e-26 at a million; 8: ~1e-8)."""
    h = hashlib.blake2b(digest_size=size)
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.digest()


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` whose result always encodes as UTF-8: with ``ensure_ascii=False`` a lone
    surrogate in a string is written as its ``\\udXXX`` escape, which reads back to the same string
    (lossless, where :func:`well_formed` is not). Every JSON and JSONL file hub-pgen writes uses it."""
    text = json.dumps(obj, **kwargs)
    if not has_surrogate(text):
        return text
    # outside strings JSON has only ASCII: every surrogate here is inside a string literal
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# --- Markdown ----------------------------------------------------------------------------------

# backslash-escaped anywhere (CommonMark: any ASCII punctuation may be): emphasis, code spans,
# brackets (so no link, image or reference: '(' and '!' mean nothing without them), table pipes,
# strikethrough, math ($), autolinks (the ':' of 'scheme://', the '@' of an address); '&', '<', '>'
# become entities (no tag, no <autolink>, no entity of the text's own); block markers (heading, list,
# quote, setext) only where they could act, at the start
_MD_PUNCT = re.compile(r"([\\`*\[\]|~@$]|:(?=/)|(?<![^\W_])_|_(?![^\W_]))")  # '_' inside a word is inert
_MD_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x85\u2028\u2029]+")
_WWW = re.compile(r"(?i)\b(www)\.")
_BLOCK_START = re.compile(r"^(\s*)(?:([#+\-=])|(\d+)([.)]))")


def for_markdown(text: object) -> str:
    """``text`` as literal Markdown inside a line: renders as the same characters (line breaks as
    one space, control and bidi characters as their escapes, as :func:`inline` shows them: the
    README is read with ``cat`` too) and never as markup; at the start of a line too."""
    return _BLOCK_START.sub(_escape_block_marker, for_markdown_cell(text))


def for_markdown_cell(text: object) -> str:
    """:func:`for_markdown` for a table cell (whose content is inline: no block marker acts there):
    each ``|`` stays in its cell (escaped, with an odd number of backslashes before it whatever the
    text), and the row stays one line."""
    s = well_formed(text if isinstance(text, str) else str(text))
    s = _LINE_BREAKS.sub(" ", s).replace("\x00", "\ufffd")
    s = _MD_PUNCT.sub(r"\\\1", s)
    if any(c in s for c in "&<>"):
        s = "".join(_MD_ENTITY.get(c, c) for c in s)
    s = _WWW.sub(r"\1\\.", s)  # www.host autolinks
    return _INLINE.sub(_escape, s)  # controls shown ('\x1b' renders as those 4 characters), as on a terminal


def _escape_block_marker(m: re.Match[str]) -> str:
    space, mark, number, delimiter = m.groups()
    return f"{space}\\{mark}" if mark else f"{space}{number}\\{delimiter}"


def for_markdown_code(text: object) -> str:
    """An inline code span showing ``text`` as it is (on one line): fenced by a run of backticks longer
    than any inside it, so the text cannot close it. Not for a table cell (pipes)."""
    s = inline(_LINE_BREAKS.sub(" ", well_formed(text if isinstance(text, str) else str(text))))
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"
