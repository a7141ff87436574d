"""The pgen prompt: the seed's template, grown with what the Hi Robot paper's appendix A says.

A.1: the scenario and response types are assigned per sample (see ``hub_pgen.plan.taxonomy``) and
the model is told which to write. A.2: a detailed task description, grounding in the images and
the prior skills, and licence to use world knowledge (preferences, implicit requests).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hub_pgen.data import Sample
from hub_pgen.plan.taxonomy import RESPONSE_TYPES, SCENARIO_TYPES

PGEN_PROMPT_TEMPLATE = """You are a robot-assistant dialogue generator for hierarchical robot policies.

You will receive:
- A list of images showing the current robot scene ({num_images} camera view(s)).
- The high-level task: {task_description}
- Previous skill steps completed: {skill_history}
- The next skill to be performed by the robot: {skill_current}

Generate two things in JSON:
1. "user_prompt": a natural-sounding user request that logically leads to the robot performing the skill "{skill_current}" given the task and history.
2. "robot_utterance": a natural robot reply acknowledging or clarifying the request.

Write this kind of interaction:
- scenario_type "{scenario_type}": {scenario_description}.
- response_type "{response_type}": {response_description}.

The responses must be grounded in the visual scene, the task, and the skill history: mention only objects that are plausibly visible or part of the task, and keep the request consistent with what the robot has already done. You may use everyday world knowledge (preferences, implicit needs) to make the user sound real. The user speaks to the robot in one or two short sentences and never names the skill verbatim; the robot answers in one short sentence, in the first person.

Respond ONLY in JSON:
{{
  "scenario_type": "{scenario_type}",
  "response_type": "{response_type}",
  "user_prompt": "...",
  "robot_utterance": "..."
}}"""


def _field(sample: Sample | Mapping[str, Any], name: str, default: Any = None) -> Any:
    if isinstance(sample, Mapping):
        return sample.get(name, default)
    return getattr(sample, name, default)


PLACEHOLDERS = ("num_images", "task_description", "skill_history", "skill_current", "scenario_type",
                "scenario_description", "response_type", "response_description")
PROMPT_FILE_MAX_BYTES = 64 * 1024  # the built-in template is ~2 KB; 64 KiB is ~16k tokens of prompt
_SHOWN_PROBLEMS = 5
_TOKEN = re.compile(r"\{\{|\}\}|[{}]")
_FIELD = re.compile(r"\{([^{}\n]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class PromptFileError(ValueError):
    """A ``--prompt-file`` that cannot be used; the message says why (and where in the file)."""


@dataclass(frozen=True)
class Template:
    """A prompt template taken apart: literal text and the placeholders between it. Rendering joins
    them with the values: nothing is evaluated (``str.format`` would read attributes and items of
    the values, ``{skill_current.__class__}``), and a value's own braces are text."""

    pieces: tuple[str, ...]  # literal text; between two pieces comes fields[i]
    fields: tuple[str, ...]

    def render(self, values: Mapping[str, Any]) -> str:
        out = [self.pieces[0]]
        for name, piece in zip(self.fields, self.pieces[1:]):
            out += (str(values[name]), piece)
        return "".join(out)


def parse_template(text: str, *, where: str = "the prompt template") -> Template:
    """``text`` as a :class:`Template`: plain ``{name}`` placeholders from :data:`PLACEHOLDERS` and
    the ``{{`` / ``}}`` escapes of a literal brace, nothing else (no format spec, conversion,
    attribute or index). Raises :class:`PromptFileError` naming each problem and its line."""
    pieces, fields, problems, literal = [], [], [], []
    unknown = False
    pos = 0
    while (m := _TOKEN.search(text, pos)) is not None:
        literal.append(text[pos:m.start()])
        pos = m.end()
        token = m.group()
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if token == "}":
            problems.append(f"{_at(text, m.start())}: a lone '}}' (a literal brace is written }}}})")
            continue
        field = _FIELD.match(text, m.start())
        if field is None:
            problems.append(f"{_at(text, m.start())}: a '{{' that opens no placeholder "
                            f"({_excerpt(text, m.start())}; a literal brace is written {{{{)")
            continue
        pos = field.end()
        inner = field.group(1)
        name = _NAME.match(inner)
        shown = _excerpt(text, m.start(), field.end())
        if name is not None and name.end() == len(inner) and inner in PLACEHOLDERS:
            pieces.append("".join(literal))
            literal = []
            fields.append(inner)
        elif name is not None and name.group() in PLACEHOLDERS:
            problems.append(f"{_at(text, m.start())}: {shown} is not a plain placeholder: only {{{name.group()}}} is "
                            f"substituted (no format spec, conversion, attribute or index: {inner[name.end():]!r})")
        elif name is not None and name.end() == len(inner):
            unknown = True
            problems.append(f"{_at(text, m.start())}: unknown placeholder {shown}")
        else:
            problems.append(f"{_at(text, m.start())}: {shown} is not a placeholder; a literal brace (as in JSON) is "
                            "written {{ or }}, as the built-in template does")
    literal.append(text[pos:])
    pieces.append("".join(literal))
    if problems:
        more = len(problems) - _SHOWN_PROBLEMS
        raise PromptFileError(f"{where}: " + "; ".join(problems[:_SHOWN_PROBLEMS])
                              + (f"; and {more} more" if more > 0 else "")
                              + (f" (known placeholders: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
                                 if unknown else ""))
    return Template(tuple(pieces), tuple(fields))


def _at(text: str, i: int) -> str:
    line = text.count("\n", 0, i) + 1
    return f"line {line}, column {i - text.rfind(chr(10), 0, i)}"


def _excerpt(text: str, start: int, end: int | None = None) -> str:
    end = end if end is not None else min(len(text), start + 20)
    shown = text[start:end]
    return shown if len(shown) <= 40 else shown[:40] + "…"


def check_template(text: str, *, where: str = "the prompt template") -> None:
    """A user's template (``--prompt-file``) parses (:func:`parse_template`) and names
    ``{skill_current}``: raises :class:`PromptFileError` (a ValueError) saying what is wrong."""
    template = parse_template(text, where=where)
    if "skill_current" not in template.fields:
        raise PromptFileError(f"{where} never names {{skill_current}}: the model would not know which skill the "
                              "dialogue leads to")


def read_prompt_file(path: str | os.PathLike[str]) -> str:
    """The text of a ``--prompt-file``: a regular file of at most :data:`PROMPT_FILE_MAX_BYTES`, UTF-8
    (a byte-order mark is dropped), without NUL bytes. Never blocks: a FIFO, a device (``/dev/zero``)
    or a folder is refused from its ``fstat``, before a byte is read. Raises :class:`PromptFileError`."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise PromptFileError(f"cannot be read ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PromptFileError(f"is {_kind(st.st_mode)}, not a text file")
        if st.st_size > PROMPT_FILE_MAX_BYTES:
            raise PromptFileError(f"is {st.st_size:,} bytes; a prompt file holds at most {PROMPT_FILE_MAX_BYTES:,}")
        chunks, size = [], 0
        while size <= PROMPT_FILE_MAX_BYTES:  # a file that grows (or a /proc file of size 0) reads no further
            chunk = os.read(fd, PROMPT_FILE_MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise PromptFileError(f"cannot be read ({e.strerror or e})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > PROMPT_FILE_MAX_BYTES:
        raise PromptFileError(f"is over {PROMPT_FILE_MAX_BYTES:,} bytes, the most a prompt file holds")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise PromptFileError(f"is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line})") from None
    if "\x00" in text:
        raise PromptFileError(f"holds a NUL byte (line {text.count(chr(10), 0, text.index(chr(0))) + 1}): is it "
                              "a binary file?")
    return text


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


@lru_cache(maxsize=8)
def _template(text: str) -> Template:
    return parse_template(text)


def construct_prompt(sample: Sample | Mapping[str, Any], template: str | None = None) -> str:
    """The full text prompt for one sample (a :class:`Sample` or the seed's D_labeled dict), from
    ``template`` (``--prompt-file``, checked at option time) or the built-in :data:`PGEN_PROMPT_TEMPLATE`.

    A dict without assigned types gets ``direct_request`` / ``confirmation``.
    """
    history = list(_field(sample, "skill_history", []) or [])
    scenario = _field(sample, "scenario_type") or "direct_request"
    response = _field(sample, "response_type") or "confirmation"
    images = _field(sample, "images", []) or []
    return _template(template or PGEN_PROMPT_TEMPLATE).render({
        "num_images": len(images),
        "task_description": _field(sample, "task_description", "") or "(not given)",
        "skill_history": "; ".join(history) if history else "(none yet: this is the first skill)",
        "skill_current": _field(sample, "skill_current", ""),
        "scenario_type": scenario,
        "scenario_description": SCENARIO_TYPES.get(scenario, scenario),
        "response_type": response,
        "response_description": RESPONSE_TYPES.get(response, response),
    })


def prompt_template_hash(template: str | None = None) -> str:
    """Identifies the prompt wording and taxonomy in provenance and the configuration fingerprint."""
    blob = json.dumps([template or PGEN_PROMPT_TEMPLATE, SCENARIO_TYPES, RESPONSE_TYPES], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
