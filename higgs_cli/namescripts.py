"""Scripts whose speakers are named at the start of each line (`Alice: Hello.`, `DR. SMITH: ...`): detection and conversion; pure.

This is how podcast generators, Gemini-style multi-speaker prompts and screenplays write dialogue. Detection is
deliberately conservative, because prose uses colons too (`Note: ...`, `At 10:30 we left`): a `Name:` tag must
open most paragraphs, at least two names must each be used twice, and label words (`Note`, `Warning`, `Title`...)
are never speakers. A text that nearly qualifies is read as plain text with a warning naming the line, so the
user can force `--format name-colon`. Names become SPEAKER0..n in order of first appearance; the names are kept
so `--voice Alice=ava` and gender-aware casting still see them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

# `Name:` / `**Name:**` / `**Name**:` / `NAME (laughing):` / `3. [Male speaker]:` opening a line, then a space or the end.
_TAG = re.compile(r"^\s*(?:\d{1,4}[.)]\s+)?(?:\*\*|__)?(?P<open>\[)?(?P<name>[^\W\d_][\w'’.\- ]{0,40}?)(?(open)\])\s*"
                  r"(?:\((?P<cue>[^()\n]{1,40})\))?\s*(?:\*\*|__)?:(?:\*\*|__)?(?=\s|$)")
_WORD = re.compile(r"^(?:[^\W\d_][\w'’-]*\.?|\d{1,2})$")  # Alice, O'Neil, Mary-Jane, Dr., J., a trailing 1 (Host 1)
_PARTICLES = {"de", "da", "del", "der", "di", "du", "la", "le", "van", "von", "bin", "al", "el", "y"}
# Words that label a line in prose, notes and outlines; they are never read as speakers unless forced.
LABELS = {"note", "notes", "warning", "caution", "tip", "tips", "important", "example", "examples", "summary", "title", "subtitle",
          "episode", "chapter", "part", "section", "scene", "setting", "topic", "topics", "date", "time", "location", "place",
          "source", "sources", "question", "answer", "update", "edit", "ps", "p.s.", "nb", "n.b.", "todo", "fixme", "result",
          "results", "definition", "step", "solution", "problem", "hint", "reminder", "disclaimer", "abstract", "keywords",
          "author", "by", "duration", "length", "format", "style", "tone", "music", "sfx", "sound", "intro", "outro",
          "transcript", "script", "context", "background", "objective", "goal", "goals", "agenda", "attendees", "action",
          "http", "https", "ftp", "mailto", "re", "fw", "fwd", "subject", "to", "from", "cc"}
# Words that open phrases, not names: "In Paris: ...", "The answer: ..." are prose.
_OPENERS = {"a", "an", "the", "in", "on", "at", "for", "to", "from", "with", "by", "if", "when", "and", "but", "or", "so", "as",
            "of", "after", "before", "then", "now", "here", "there", "this", "that", "these", "those", "my", "our", "your",
            "his", "her", "their", "its", "it", "we", "you", "they", "he", "she", "what", "why", "how", "where", "who", "which",
            "day", "week", "month", "year", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
MAX_NAME_CHARS = 32
MAX_NAME_WORDS = 4
MIN_SHARE = 0.6  # of paragraph openings that must start with a name


@dataclass(frozen=True)
class Tag:
    """A `Name:` tag opening a line: the name as written, its key (case and spacing folded), a cue, where the words start."""

    name: str
    key: str
    cue: str | None
    end: int


@lru_cache(maxsize=1 << 16)  # detection, mapping, conversion and notes each look at every line
def tag(line: str) -> Tag | None:
    """The name tag opening `line`, if its name looks like a person's or a role's (short, capitalised words)."""
    if ":" not in line[:120]:  # most lines of prose: no colon near the start, no tag (and no regex run)
        return None
    m = _TAG.match(line)
    if not m:
        return None
    name = " ".join(m.group("name").split())
    words = name.split()
    if not words or len(words) > MAX_NAME_WORDS or len(name) > MAX_NAME_CHARS or not all(_WORD.match(w) for w in words):
        return None
    if words[0].isdigit() or words[0][0].islower() or len([w for w in words if w.isdigit()]) > 1 or (words[-1].isdigit() and len(words) == 1):
        return None
    for w in words[1:]:
        if w[0].islower() and w not in _PARTICLES and not m.group("open"):  # "[Male speaker]:": the brackets say it is a name
            return None
        if w.isdigit() and w is not words[-1]:
            return None
    if words[0].casefold() in _OPENERS:
        return None
    if len(words) == 1 and len(name.rstrip(".")) < 2:  # Q: / A: are questions and answers, not people
        return None
    return Tag(name, name.casefold(), m.group("cue"), m.end())


def is_label(found: Tag) -> bool:
    return found.key.rstrip(".") in LABELS or found.key.split()[0].rstrip(".") in LABELS


@dataclass(frozen=True)
class Verdict:
    """What detection saw: whether the text is a named script, and if it nearly is, the line that makes it look like one."""

    named: bool
    near_line: int | None = None
    near_name: str | None = None


def judge(lines: list[str], body: set[int]) -> Verdict:
    """Is this a named-speaker script? `body` holds the indexes of lines that count (not blank, not headings)."""
    tags = {i: t for i in body if (t := tag(lines[i])) is not None and not is_label(t)}
    if not tags:
        return Verdict(False)
    start = min(body)
    openings = {i for i in body if i == start or not lines[i - 1].strip() or i in tags or (i - 1) not in body}
    share = len(tags) / len(openings)
    uses = Counter(t.key for t in tags.values())
    reused = [k for k, n in uses.items() if n >= 2]
    if share >= MIN_SHARE and len(reused) >= 2:
        return Verdict(True)
    first = min(tags)
    if share >= MIN_SHARE and len(uses) >= 2:
        return Verdict(False, first + 1, tags[first].name)
    return Verdict(False)


def speakers(lines: list[str], forced: bool) -> tuple[dict[str, str], dict[str, str]]:
    """(name key -> SPEAKERn, SPEAKERn -> the name as first written), in order of first appearance."""
    ours: dict[str, str] = {}
    names: dict[str, str] = {}
    for line in lines:
        t = tag(line)
        if t is None or (is_label(t) and not forced) or t.key in ours:
            continue
        ours[t.key] = f"SPEAKER{len(ours)}"
        names[ours[t.key]] = t.name
    return ours, names


def notes_for(lines: list[str], ours: dict[str, str], names: dict[str, str], forced: bool) -> list[tuple[int, str, str]]:
    """(line, kind, message) for what a reader should check: labels kept as text, names used once, lines with no name."""
    found: list[tuple[int, str, str]] = []
    uses = Counter(t.key for ln in lines if (t := tag(ln)) is not None and t.key in ours)
    current = None  # None: the narrator's (before the first name, or after a heading)
    for number, line in enumerate(lines, start=1):
        t = tag(line)
        if t is not None and t.key in ours:
            current = ours[t.key]
            if uses[t.key] == 1 and not forced:
                found.append((number, "warning", f"{t.name!r} speaks only here; read as a speaker ({current}). If it is not a "
                                                 "speaker, write the line without the colon"))
            continue
        if line.lstrip().startswith("#"):  # a heading: what follows it untagged is the narrator's
            current = None
            continue
        if not any(ch.isalnum() for ch in line):  # blank, or a rule (-----): nothing is read
            continue
        who = "NARRATOR" if current is None else f"{names[current]} ({current}), the last speaker named"
        if t is not None and is_label(t):
            found.append((number, "warning", f"{t.name + ':'!r} is a label, not a speaker; read as text by {who}"))
        elif number == 1 or not lines[number - 2].strip() or lines[number - 2].lstrip().startswith("#"):  # opens a paragraph
            found.append((number, "warning", f"this paragraph has no speaker name; read by {who}"))
    return found
