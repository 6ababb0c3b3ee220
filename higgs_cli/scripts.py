"""Other tools' script formats -> our transcript text: detection by content, speaker mapping, per-line notes; pure.

Formats:
  higgs          ours: `[SPEAKER0] text` or `[NAME] text` opening a line
  speaker-colon  VibeVoice-style `Speaker 1: text` lines
  inline-s       Dia / MOSS-TTSD-style `[S1] ... [S2] ...` (several turns on one line), and `[Speaker 1]`,
                 `[speaker1]`, `[spk 2]` tags in any case
  name-colon     podcast / screenplay lines opening with a speaker's name: `Alice: text`, `DR. SMITH: text`
                 (detected conservatively, see namescripts.py)
  jsonl          one JSON object per line (or a JSON array of them) with a text field and, if present,
                 a speaker field; a text holding inline tags is read as inline-s

Their speakers become SPEAKER0..n in order (numbered speakers by number, named ones by first use), so
`--voice SPEAKER0=NAME` works the same whatever the source. Converted text keeps a map from each of its
lines to the source line, so errors and notes name the line the user wrote.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .errors import TranscriptError

FORMATS = ("auto", "higgs", "speaker-colon", "inline-s", "jsonl", "name-colon")
FORMAT_NAMES = {"higgs": "higgs transcript", "speaker-colon": "`Speaker N:` script (VibeVoice style)",
                "inline-s": "inline `[S1]`/`[Speaker 1]` script (Dia / MOSS-TTSD style)", "jsonl": "JSONL script",
                "name-colon": "`Name:` script (podcast / screenplay style)"}

_COLON = re.compile(r"^\s*(?:\*\*)?speaker\s*(?P<num>\d+)\s*(?:\*\*)?\s*:\s*(?:\*\*)?", re.I)
_INLINE = re.compile(r"\[(?:s|spk|speaker)[\s_-]*(?P<num>\d+)\]", re.I)
_NATIVE = re.compile(r"^\s*\[SPEAKER\d+\]")  # our own tag, only at the start of a line
_HEADING = re.compile(r"^\s*#{1,3}\s+\S")
# Dia-style non-verbal cues in parentheses: ours where we have one, else dropped (said in a note).
_CUES = re.compile(r"\((?P<cue>laughs?|laughing|chuckles?|coughs?|applause|claps|cheering|clears throat|sighs?|gasps?|"
                   r"singing|sings|mumbles|beep|groans?|sniffs?|screams?|inhales?|exhales?|burps?|humming|hums|"
                   r"sneezes?|whistles?)\)", re.I)
_CUE_EVENTS = {"laugh": "laugh", "laughs": "laugh", "laughing": "laugh", "chuckle": "laugh", "chuckles": "laugh",
               "cough": "cough", "coughs": "cough", "applause": "applause", "claps": "applause", "cheering": "cheering"}
_TEXT_KEYS = ("text", "content", "utterance", "transcript", "sentence", "line")
_SPEAKER_KEYS = ("speaker", "role", "spk", "speaker_id", "name", "voice", "character")


@dataclass(frozen=True)
class Note:
    """One thing done to the input that the user should know about: where, what kind, and what."""

    line: int | None
    kind: str  # "format", "speaker", "converted", "removed", "warning"
    message: str

    def doc(self) -> dict:
        return {"line": self.line, "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class Converted:
    """A script in our transcript format, with the source line of each of its lines."""

    text: str
    format: str
    lines: tuple[int, ...]  # lines[i] = source line (1-based) of output line i + 1
    speakers: dict[str, str] = field(default_factory=dict)  # their label -> ours
    notes: tuple[Note, ...] = ()
    names: dict[str, str] = field(default_factory=dict)  # ours -> the speaker's name as written, where it has one

    def source_line(self, line: int) -> int:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else line


def detect(text: str) -> str:
    """The format of a script, judged by its content."""
    body = [ln for ln in text.split("\n") if ln.strip() and not _HEADING.match(ln)]
    if not body:
        return "higgs"
    first = body[0].strip()
    if first.startswith("{") and _json_object(first) is not None:
        return "jsonl"
    if first.startswith("[") and _json_array(text) is not None:
        return "jsonl"
    if any(_COLON.match(ln) for ln in body):
        return "speaker-colon"
    for ln in body:  # a line must open with a tag: "as shown in [S1]" mid-sentence (a citation) is not a script
        tags = list(_INLINE.finditer(ln))
        if tags and _INLINE.match(ln.lstrip()) and (len(tags) > 1 or not _NATIVE.match(ln)):
            return "inline-s"
    from .namescripts import judge

    lines = text.split("\n")
    if judge(lines, _body(lines)).named:
        return "name-colon"
    return "higgs"


def _body(lines: list[str]) -> set[int]:
    return {i for i, ln in enumerate(lines) if ln.strip() and not _HEADING.match(ln)}


def convert(text: str, fmt: str = "auto", source: str | None = None) -> Converted:
    """Turn a script in `fmt` (or the detected format) into our transcript text."""
    if fmt not in FORMATS:
        raise TranscriptError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}", source)
    _no_surrogates(text, source)
    found = detect(text) if fmt == "auto" else fmt
    lines = text.split("\n")
    if found == "higgs":
        if fmt == "auto":
            _no_json(lines, source)
        notes = _near_named(lines) if fmt == "auto" else _forced_notes(text, lines) if fmt == "higgs" else ()
        return Converted(text, "higgs", tuple(range(1, len(lines) + 1)), notes=notes)
    if found == "jsonl":
        return _from_json(text, source)
    if found == "name-colon":
        return _from_names(lines, fmt == "name-colon", source)
    pattern = _COLON if found == "speaker-colon" else _INLINE
    labels = sorted({int(m.group("num")) for ln in lines for m in _tags(pattern, ln, found)})
    if not labels:
        raise TranscriptError(f"no {FORMAT_NAMES[found]} speaker tags found; use --format auto or fix the tags", source)
    ours = {n: f"SPEAKER{i}" for i, n in enumerate(labels)}
    out, where, notes = [], [], []
    for number, line in enumerate(lines, start=1):
        pieces = _split_turns(pattern, line, found, ours)
        for piece in pieces:
            piece, cue_notes = _cues(piece, number)
            notes += cue_notes
            out.append(piece)
            where.append(number)
    written = {}  # each speaker number as the script first wrote it: "[Speaker 1]", "[S1]", "Speaker 1"
    for ln in lines:
        for m in _tags(pattern, ln, found):
            written.setdefault(int(m.group("num")), m.group(0).strip(" \t*:"))
    speakers = {written.get(n, _label(found, n)): ours[n] for n in labels}
    return Converted("\n".join(out), found, tuple(where), speakers, tuple(notes))


def _near_named(lines: list[str]) -> tuple[Note, ...]:
    """A warning when a text nearly reads as a `Name:` script (names open most lines, but none is used twice)."""
    from .namescripts import judge

    verdict = judge(lines, _body(lines))
    if verdict.near_line is None:
        return ()
    return (Note(verdict.near_line, "warning", f"lines open with names like {verdict.near_name + ':'!r} but too few are reused to be "
                                               "sure they are speakers; read as text (force it with --format name-colon)"),)


def _from_names(lines: list[str], forced: bool, source: str | None) -> Converted:
    """`Alice: text` lines -> `[SPEAKER0] text`; names in order of first appearance; checks noted per line."""
    from .namescripts import notes_for, speakers, tag

    ours, names = speakers(lines, forced)
    if not ours:
        raise TranscriptError("no `Name:` speaker tags found (a capitalised name and a colon opening a line); "
                              "use --format auto or fix the tags", source)
    out, notes = [], []
    for number, line in enumerate(lines, start=1):
        t = tag(line)
        if t is None or t.key not in ours:
            out.append(line)
            continue
        said = line[t.end:].strip()
        if t.cue:
            cue, cue_notes = _cues(f"({t.cue.strip()})", number)
            if not cue_notes:
                cue_notes = [Note(number, "removed", f"({t.cue.strip()}): a direction, not spoken")]
                cue = ""
            said, notes = f"{cue.strip()} {said}".strip(), notes + cue_notes
        piece, cue_notes = _cues(said, number)
        out.append(f"[{ours[t.key]}] {piece}".rstrip())
        notes += cue_notes
    notes += [Note(line, kind, message) for line, kind, message in notes_for(lines, ours, names, forced)]
    speakers_seen = {names[s]: s for s in ours.values()}
    return Converted("\n".join(out), "name-colon", tuple(range(1, len(lines) + 1)), speakers_seen, tuple(notes), names)


def _no_surrogates(text: str, source: str | None) -> None:
    """Text that is not valid Unicode (bytes that were not UTF-8 on the command line, a lone JSON surrogate) is named."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        line = text.count("\n", 0, e.start) + 1
        raise TranscriptError(f"the text holds a character that is not valid Unicode (U+{ord(text[e.start]):04X}, bytes that were "
                              "not UTF-8?); save or send it as UTF-8", source, line) from None


def _forced_notes(text: str, lines: list[str]) -> tuple[Note, ...]:
    """--format higgs on what reads as another format, or with JSON lines: rendered as asked, with a warning naming the line."""
    looks = detect(text)
    if looks != "higgs":
        pattern = _COLON if looks == "speaker-colon" else _INLINE
        line = next((n for n, ln in enumerate(lines, start=1) if pattern.search(ln) or ln.lstrip().startswith(("{", "["))), None)
        return (Note(line, "warning", f"this looks like another format ({FORMAT_NAMES[looks]}), read as a higgs transcript because of "
                                      "--format higgs, so its tags or JSON may be read aloud; --format auto reads it as written"),)
    line = next((n for n, ln in enumerate(lines, start=1) if ln.lstrip().startswith("{") and _json_object(ln.strip()) is not None), None)
    if line is not None:
        return (Note(line, "warning", "this line is a JSON object, read aloud as written because of --format higgs"),)
    return ()


def _no_json(lines: list[str], source: str | None) -> None:
    """JSON is never read aloud: a JSON object line in what looks like a transcript is refused, naming the line."""
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith("{") and _json_object(line.strip()) is not None:
            raise TranscriptError("this line is a JSON object, which would be read aloud; for a JSONL script every line "
                                  "must be one (then it is detected), or force it with --format jsonl", source, number)


def _tags(pattern: re.Pattern[str], line: str, fmt: str) -> list[re.Match[str]]:
    if fmt == "speaker-colon":
        m = pattern.match(line)
        return [m] if m else []
    return list(pattern.finditer(line))


def _split_turns(pattern: re.Pattern[str], line: str, fmt: str, ours: dict[int, str]) -> list[str]:
    """One output line per turn: `[S1] a [S2] b` -> `[SPEAKER0] a`, `[SPEAKER1] b`."""
    tags = _tags(pattern, line, fmt)
    if not tags:
        return [line]
    pieces = [line[: tags[0].start()].strip()] if line[: tags[0].start()].strip() else []
    for i, m in enumerate(tags):
        end = tags[i + 1].start() if i + 1 < len(tags) else len(line)
        pieces.append(f"[{ours[int(m.group('num'))]}] {line[m.end():end].strip()}".rstrip())
    return pieces


def _label(fmt: str, n: int) -> str:
    return f"Speaker {n}" if fmt == "speaker-colon" else f"[S{n}]"


def _cues(text: str, line: int) -> tuple[str, list[Note]]:
    notes = []

    def swap(m: re.Match[str]) -> str:
        cue = m.group("cue").lower()
        event = _CUE_EVENTS.get(cue)
        if event:
            notes.append(Note(line, "converted", f"({cue}) -> [{event}]"))
            return f"[{event}]"
        notes.append(Note(line, "removed", f"({cue}): no such sound event here; not spoken"))
        return " "

    return _CUES.sub(swap, text), notes


def _json_object(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _json_array(text: str) -> list | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) else None


def _records(text: str, source: str | None) -> list[tuple[int, dict]]:
    """(source line, object) per JSON record; anything else is an error naming its line (JSON is never read aloud)."""
    array = _json_array(text) if text.lstrip().startswith("[") else None
    if array is not None:
        return [(1, obj) for obj in array]
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        obj = _json_object(line.strip())
        if obj is None:
            raise TranscriptError("not a JSON object; a JSONL script has one {\"text\": ...} object per line", source, number)
        records.append((number, obj))
    return records


def _field(obj: dict, keys: tuple[str, ...], source: str | None = None, line: int | None = None) -> str | None:
    for key in keys:
        value = obj.get(key)
        if value in (None, ""):
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise TranscriptError(f"JSON field {key!r} is {type(value).__name__}, which would be read aloud as code; "
                                  "give it as a string", source, line)
        return str(value)
    return None


def _from_json(text: str, source: str | None) -> Converted:
    records = _records(text, source)
    rows = []
    for number, obj in records:
        said = _field(obj, _TEXT_KEYS, source, number)
        if said is None:
            raise TranscriptError(f"JSON record has no text field (looked for {', '.join(_TEXT_KEYS)})", source, number)
        rows.append((number, _field(obj, _SPEAKER_KEYS, source, number), " ".join(said.split("\n"))))
    names = list(dict.fromkeys(spk for _, spk, _ in rows if spk is not None))
    if names and all(n.strip().lstrip("-").isdigit() for n in names):
        names.sort(key=lambda n: int(n))
    ours = {name: f"SPEAKER{i}" for i, name in enumerate(names)}
    inline = [m for _, _, said in rows for m in _INLINE.finditer(said)]
    labels = sorted({int(m.group("num")) for m in inline})
    inline_ours = {n: f"SPEAKER{i + len(names)}" for i, n in enumerate(labels)}
    out, where, notes = [], [], []
    for number, spk, said in rows:
        pieces = _split_turns(_INLINE, said, "inline-s", inline_ours) if _INLINE.search(said) else [said]
        if spk is not None and not _INLINE.match(said.strip()):
            pieces[0] = f"[{ours[spk]}] {pieces[0]}"
        for piece in pieces:
            piece, cue_notes = _cues(piece, number)
            notes += cue_notes
            out += [piece, ""]  # each record is its own paragraph
            where += [number, number]
    speakers = {**{f"speaker {n!r}": s for n, s in ours.items()}, **{f"[S{n}]": s for n, s in inline_ours.items()}}
    given = {s: n for n, s in ours.items() if not n.strip().lstrip("-").isdigit()}  # `--voice host=ava` works too
    return Converted("\n".join(out), "jsonl", tuple(where), speakers, tuple(notes), given)


def load(text: str, fmt: str = "auto", source: str | None = None, clean: object | None = None):
    """Text in any supported format -> Script (lines are the source's), with the conversion's notes attached.

    `clean` (a textclean.CleanOptions, or None for its defaults) cleans the text for speech after conversion.
    """
    from dataclasses import replace

    from .textclean import clean_text
    from .transcript import parse_transcript

    converted = convert(text, fmt, source)
    cleaned, clean_notes = clean_text(converted.text, clean)
    notes = list(converted.notes) + [replace(n, line=converted.source_line(n.line)) if n.line else n for n in clean_notes]
    if converted.format != "higgs":
        mapping = ", ".join(f"{theirs} -> {ours}" for theirs, ours in converted.speakers.items())
        notes.insert(0, Note(None, "format", f"read as {FORMAT_NAMES[converted.format]}" + (f"; {mapping}" if mapping else "")))
    try:
        script = parse_transcript(cleaned, source)
    except TranscriptError as e:
        if e.line is None or converted.format == "higgs":
            raise
        message = str(e)[len(f"{e.path or '<text>'}:{e.line}: "):]
        raise TranscriptError(message, e.path, converted.source_line(e.line)) from e
    segments = tuple(replace(s, line=converted.source_line(s.line)) for s in script.segments)
    notes += [replace(n, line=converted.source_line(n.line)) if n.line else n for n in script.notes]  # the parser's warnings
    notes.sort(key=lambda n: (n.line or 0))
    return replace(script, segments=segments, notes=tuple(notes), format=converted.format, names=converted.names)


def read(path, fmt: str = "auto", clean: object | None = None):
    """Read a script file (UTF-8) in any supported format; errors carry `file:line`."""
    from .transcript import read_text

    return load(read_text(path), fmt, str(path), clean)
