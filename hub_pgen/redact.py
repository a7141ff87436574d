"""What hub-pgen *records* of a command or a setting: secrets and local paths taken out.

A command line the user gives (``--serve-command``, the job's argument list) may hold an API key, a
token, a password in a URL, or the layout of their disk. Whatever hub-pgen writes of it — the
provenance (``meta/hub_pgen.json``), the dataset card and the review page (both made from the
provenance, and pushed), a server's log and messages, the Jobs summary and ``--json`` record — goes
through :func:`redact_argv` / :func:`redact_command` / :func:`redact_text`. The command actually run
is never changed.

The rule (the README says it too, where ``--serve-command`` is documented):

1. the value of a flag whose name has a word ``token``, ``key``, ``secret``, ``password``, ``passwd``,
   ``auth``/``authorization``, ``credential(s)`` or ``signature`` (``--api-key V``, ``--hf-token=V``,
   ``HF_TOKEN=V``, ``?access_token=V`` in a URL) becomes ``***``; a flag that names an environment
   variable rather than holding a value (``--api-key-env VAR``) is kept;
2. anything shaped like a token becomes its prefix and ``***``: ``hf_…``, ``sk-…``, GitHub's ``ghp_…``
   (``gho_``, ``ghu_``, ``ghs_``, ``ghr_``, ``github_pat_``), ``Bearer …``, and the
   user-info of a URL (``https://user:pass@host`` → ``https://***@host``);
3. an absolute local path (``/…``, ``~/…``, ``file:///…``, ``C:\\…``), as a whole argument or as the
   value of ``--flag=`` / ``NAME=``, becomes ``…/`` and its last component
   (``/home/me/venv/bin/vllm`` → ``…/vllm``): what it is stays readable, where it is on the disk does not.

Placeholders (``{model}``, ``{port}``) are kept, so a recorded ``--serve-command`` is still a template.
Redacting twice gives the same text.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

from hub_pgen.textsafe import inline

MASK = "***"
ELLIPSIS = "\u2026"  # …

_SECRET_WORDS = frozenset({"token", "key", "apikey", "secret", "password", "passwd", "pwd", "auth",
                           "authorization", "credential", "credentials", "signature", "sig", "cookie"})
_NAME_ONLY_WORDS = frozenset({"env", "var", "variable"})  # --api-key-env VAR: a name, not the secret
_WORD_SPLIT = re.compile(r"[-_.\s]+|(?<=[a-z])(?=[A-Z])")

_TOKEN_SHAPES = (
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), "hf_" + MASK),
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{16,}"), "sk-" + MASK),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), "github_pat_" + MASK),
    (re.compile(r"\b(gh[pousr]_)[A-Za-z0-9]{20,}"), r"\1" + MASK),
    (re.compile(r"\b(Bearer)(\s+|%20)(?!\*\*\*)[^\s'\",;]+", re.IGNORECASE), r"\1\2" + MASK),
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)(?!\*\*\*@)[^/\s@]+@"), r"\1" + MASK + "@"),  # user:pass@
)
# ?access_token=V / &api_key=V / ;sig=V in a URL
_QUERY_SECRET = re.compile(r"([?&;]([^=&;#\s]+)=)([^&;#\s]+)")
_ABSOLUTE = re.compile(r"^(?:/|~/|~$|file://|[A-Za-z]:[\\/])")


def _is_secret_name(name: str) -> bool:
    """``--api-key``, ``HF_TOKEN``, ``hfToken``, ``authtoken``: a name that says its value is a secret."""
    words = [w.lower() for w in _WORD_SPLIT.split(name.lstrip("-")) if w]
    if not words or words[-1] in _NAME_ONLY_WORDS:
        return False
    return any(w in _SECRET_WORDS or w.endswith(("token", "key", "secret", "password")) or w.startswith("auth")
               for w in words)


def _shorten_path(text: str) -> str:
    """``/home/me/x/vllm`` → ``…/vllm``; a relative path or anything else as it is."""
    if not _ABSOLUTE.match(text):
        return text
    rest = text[len("file://"):] if text.startswith("file://") else text
    parts = [p for p in re.split(r"[\\/]+", rest) if p and not re.fullmatch(r"[A-Za-z]:|~", p)]
    return ELLIPSIS + "/" + (parts[-1] if parts else "")


def redact_text(text: str) -> str:
    """Free text (a URL, a message, a setting): token shapes, URL user-info and secret query
    parameters taken out (rule 1 for ``?name=``, rule 2); paths are left, as free text has no
    argument boundaries."""
    if not isinstance(text, str) or not text:
        return text
    for pattern, repl in _TOKEN_SHAPES:
        text = pattern.sub(repl, text)
    return _QUERY_SECRET.sub(lambda m: m.group(1) + MASK if _is_secret_name(m.group(2)) else m.group(0), text)


def _redact_one(arg: str) -> str:
    name, eq, value = arg.partition("=")
    if eq and name and re.fullmatch(r"-{0,2}[A-Za-z_][\w.-]*", name):  # --flag=value or NAME=value
        if _is_secret_name(name):
            return f"{name}={MASK}"
        return f"{name}={_shorten_path(redact_text(value))}"
    return _shorten_path(redact_text(arg))


def redact_argv(argv: Iterable[str]) -> list[str]:
    """An argument list as it may be recorded (rules 1-3): same length, element by element."""
    out: list[str] = []
    secret_next = False
    for arg in map(str, argv):
        if secret_next and not arg.startswith("-"):
            out.append(MASK)
            secret_next = False
            continue
        secret_next = False
        if arg.startswith("-") and "=" not in arg and _is_secret_name(arg):
            secret_next = True  # its value is the next argument (unless that is another flag)
            out.append(arg)
            continue
        out.append(_redact_one(arg))
    return out


def _quote(arg: str) -> str:
    """shlex.quote, but a placeholder, the mask and the ellipsis stay readable."""
    return arg if re.fullmatch(r"[\w@%+=:,./{}*\u2026-]+", arg) else shlex.quote(arg)


def join(argv: Sequence[str]) -> str:
    return " ".join(_quote(a) for a in argv)


def shown_command(argv: Sequence[str]) -> str:
    """An argument list as one line to record: ``shlex.join`` of it, or of its redacted form when there
    is something to take out."""
    argv = [str(a) for a in argv]
    shown = redact_argv(argv)
    return shlex.join(argv) if shown == argv else join(shown)


def redact_command(command: str) -> str:
    """A command line (a template such as ``--serve-command``'s) as it may be recorded: split as the
    shell would, each argument redacted, joined again; unchanged when there is nothing to take out."""
    try:
        argv = shlex.split(command)
    except ValueError:  # unbalanced quotes: no arguments to speak of, only the text
        return redact_text(command)
    shown = redact_argv(argv)
    return command if shown == argv else join(shown)


def redact_value(value: Any) -> Any:
    """Every string inside a JSON-like value through :func:`redact_text` (dict keys kept)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def printable(text: Any, limit: int = 300) -> str:
    """Text a server or an answer supplied, fit to print on a terminal or into a message: control
    characters (line breaks, escape sequences, bidi overrides) shown as escapes
    (:func:`hub_pgen.textsafe.inline`), at most ``limit`` characters (then ``…``), credentials taken out."""
    s = str(text)
    if len(s) > limit * 4:
        s = s[:limit * 4]
    s = inline(s)
    s = redact_text(s)
    return s if len(s) <= limit else s[:limit] + ELLIPSIS
