"""Transcript text -> Script(segments): reading, speaker tags and upstream-compatible normalisation; pure."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TranscriptError
from .options import DEFAULT_SPEAKER, LONG_WORD_CHARS, MAX_TRANSCRIPT_BYTES, MAX_WORD_CHARS

# A speaker tag opens a line: [SPEAKER0] (any case) or an upper-case name such as [NARRATOR].
# Lower-case bracket tags ([laugh], [music start]) are sound events, never speakers.
_SPEAKER_TAG = re.compile(r"^\s*\[(?:(?P<num>[Ss][Pp][Ee][Aa][Kk][Ee][Rr]\d+)|(?P<name>[A-Z][A-Z0-9_]*))\]")
_SPEAKER_NUM = re.compile(r"^SPEAKER(\d+)$")
_HEADING = re.compile(r"^\s*#{1,3}\s+(\S.*)$")  # "# Chapter One": a chapter heading, read by the narrator

# Full-width / CJK punctuation -> ASCII, as upstream does (the CJK comma gains a space).
_PUNCT = str.maketrans(
    {
        "，": ", ", "。": ".", "：": ":", "；": ";", "？": "?", "！": "!",
        "（": " ", "）": " ", "(": " ", ")": " ",
        "【": "[", "】": "]", "《": "<", "》": ">",
        "“": '"', "”": '"', "‘": "'", "’": "'", "、": ",", "—": "-", "…": "...",
        "·": ".", "「": '"', "」": '"', "『": '"', "』": '"',
    }
)
_UNITS = (("°F", " degrees Fahrenheit"), ("°C", " degrees Celsius"))

# Sound-event tags -> the model's markup. Paired events get start/end markers.
_EVENT_SINGLE = {"laugh": "Laughter", "music": "Music", "applause": "Applause",
                 "cheering": "Cheering", "cough": "Cough"}
_EVENT_PAIRED = {"humming": "Humming", "music": "Music", "sing": "Singing"}
_EVENT_TAG = re.compile(r"\[(?P<word>[a-z]+)(?: (?P<edge>start|end))?\]")
_SPACES = re.compile(r"\s+")
# Control tags shape timing and mixing but are never spoken: [pause], [pause:1.5],
# [music: bed.ogg] and [music off]. (The model's own [music] / [music start] events stay events.)
CONTROL_TAG = re.compile(r"\[(?:pause(?::\s*(?P<secs>\d+(?:\.\d+)?)\s*)?|music:\s*(?P<file>[^\]]+?)\s*|music off)\]")
_TRAILING_CONTROLS = re.compile(rf"(?:\s*{CONTROL_TAG.pattern})+\s*$")
_FINAL_OK = (".", "!", "?", ",", ";", '"', "'", "</SE_e>", "</SE>")


@dataclass(frozen=True)
class Segment:
    """One speaker's run of text inside one paragraph, normalised."""

    speaker: str
    text: str
    line: int  # 1-based line of the transcript where the segment (a paragraph) starts
    turn: int  # increments at every speaker change
    heading: bool = False  # a `# Heading` line: spoken by the narrator, and a chapter marker


@dataclass(frozen=True)
class Script:
    """A parsed transcript: its segments in order and its speakers in numeric/first-seen order."""

    segments: tuple[Segment, ...]
    speakers: tuple[str, ...]
    source: str | None = None
    notes: tuple[Any, ...] = ()  # scripts.Note: what reading the input converted, removed or guessed, per line
    format: str = "higgs"  # the input's script format (scripts.FORMATS)
    names: dict[str, str] = field(default_factory=dict)  # SPEAKERn -> the name a converted script gave it (`Alice:`)

    @property
    def words(self) -> int:
        return sum(len(s.text.split()) for s in self.segments)

    @property
    def headings(self) -> list[tuple[int, str]]:
        """(segment index, title) of every `# Heading`."""
        return [(i, s.text) for i, s in enumerate(self.segments) if s.heading]


def _event(match: re.Match[str]) -> str:
    word, edge = match.group("word"), match.group("edge")
    if edge and word in _EVENT_PAIRED:
        marker = "SE_s" if edge == "start" else "SE_e"
        return f"<{marker}>[{_EVENT_PAIRED[word]}]</{marker}>"
    if not edge and word in _EVENT_SINGLE:
        return f"<SE>[{_EVENT_SINGLE[word]}]</SE>"
    return match.group(0)  # unknown tags are left for later stages (e.g. pauses)


def normalise_line(text: str) -> str:
    """Normalise one line of transcript text the way upstream does (minus its bugs)."""
    text = text.translate(_PUNCT)
    for unit, words in _UNITS:
        text = text.replace(unit, words)
    text = _EVENT_TAG.sub(_event, text)
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class Control:
    """A control tag: a pause of `seconds`, or a music cue (`music` a file path, or None for off)."""

    kind: str  # "pause" or "music"
    seconds: float = 0.0
    music: str | None = None


def controls(text: str) -> list[Control]:
    """The control tags in a stretch of text, in order."""
    from .options import PAUSE_TAG

    found = []
    for m in CONTROL_TAG.finditer(text):
        if m.group(0).startswith("[pause"):
            found.append(Control("pause", float(m.group("secs")) if m.group("secs") else PAUSE_TAG))
        else:
            found.append(Control("music", music=m.group("file")))
    return found


def finish_sentence(text: str) -> str:
    """Append a full stop when the text ends without closing punctuation (as upstream).

    Trailing control tags are looked through: "Hello [pause]" becomes "Hello. [pause]".
    """
    trailing = _TRAILING_CONTROLS.search(text)
    body, rest = (text[: trailing.start()], text[trailing.start():]) if trailing else (text, "")
    if body and not body.endswith(_FINAL_OK):
        return body + "." + rest
    return text


def speaker_sort_key(speaker: str, first_seen: dict[str, int]) -> tuple[int, int]:
    """SPEAKERn by number (upstream sorts as strings: SPEAKER10 before SPEAKER2), names by first use."""
    m = _SPEAKER_NUM.match(speaker)
    return (0, int(m.group(1))) if m else (1, first_seen[speaker])


def decode_transcript(data: bytes, path: str | None = None) -> str:
    """Bytes -> text: UTF-8 with or without BOM, CRLF/CR/LF; binary or other encodings are refused."""
    if len(data) > MAX_TRANSCRIPT_BYTES:
        raise TranscriptError(f"transcript is larger than {MAX_TRANSCRIPT_BYTES >> 20} MB; split it into chapters", path)
    unicode = _decode_utf16_32(data, path)
    if unicode is not None:
        return unicode.replace("\r\n", "\n").replace("\r", "\n")
    if b"\x00" in data[:65536]:
        raise TranscriptError("this is a binary file, not a transcript; give a UTF-8 text file", path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TranscriptError(
            f"not valid UTF-8 (byte 0x{data[e.start]:02x}); transcripts must be UTF-8: re-save the file as UTF-8",
            path,
            line,
        ) from e
    return text.replace("\r\n", "\n").replace("\r", "\n")


_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _decode_utf16_32(data: bytes, path: str | None) -> str | None:
    """Text saved as UTF-16/32 with a byte-order mark (Windows Notepad's "Unicode") is read; without one it is named."""
    for bom, codec in _WIDE_BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as e:
                raise TranscriptError(f"{codec.upper()} text with a broken byte at {e.start}; re-save the file as UTF-8", path) from e
    head = data[:4096]
    if len(head) >= 4 and b"\x00" in head:
        odd, even = head[1::2].count(0) / (len(head) // 2), head[0::2].count(0) / (len(head) // 2)
        if max(odd, even) > 0.4 and min(odd, even) < 0.05:
            order = "LE" if odd > even else "BE"
            raise TranscriptError(f"this looks like UTF-16 text without a byte-order mark; re-save it as UTF-8 "
                                  f"(e.g. iconv -f UTF-16{order} -t UTF-8 FILE > FILE.utf8.txt)", path)
    return None


def read_text(path: Path) -> str:
    """A transcript file's text (UTF-8, or UTF-16/32 with a byte-order mark); errors name the file and the fix."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise TranscriptError("file not found; check the path given to --transcript", str(path)) from e
    except IsADirectoryError as e:
        raise TranscriptError("is a directory; give a transcript file", str(path)) from e
    except OSError as e:
        raise TranscriptError(f"cannot read ({e.strerror}); check permissions", str(path)) from e
    return decode_transcript(data, str(path))


def read_transcript(path: Path) -> Script:
    """Read and parse a transcript file; errors carry `file:line`."""
    return parse_transcript(read_text(path), str(path))


def parse_transcript(text: str, source: str | None = None) -> Script:
    """Split text into speaker segments; blank lines end paragraphs; untagged lines continue a turn."""
    check_tags(text, source)
    segments: list[Segment] = []
    speaker, pending_tag_line = DEFAULT_SPEAKER, None
    buf: list[str] = []
    start_line, turn = 0, 0
    first_seen: dict[str, int] = {}

    def flush() -> None:
        nonlocal buf
        body = " ".join(buf).strip()
        if body:
            first_seen.setdefault(speaker, len(first_seen))
            segments.append(Segment(speaker, finish_sentence(body), start_line, turn))
        buf = []

    for number, raw in enumerate(text.split("\n"), start=1):
        heading = _HEADING.match(raw)
        if heading and normalise_line(heading.group(1)):
            if pending_tag_line is not None:
                raise TranscriptError(f"speaker tag [{speaker}] has no text; write its words after the tag or delete it", source, pending_tag_line)
            flush()
            if speaker != DEFAULT_SPEAKER and segments:
                turn += 1
            speaker = DEFAULT_SPEAKER
            first_seen.setdefault(speaker, len(first_seen))
            segments.append(Segment(speaker, finish_sentence(normalise_line(heading.group(1))), number, turn, heading=True))
            continue
        tag = _SPEAKER_TAG.match(raw)
        rest = raw[tag.end():] if tag else raw
        if tag:
            if pending_tag_line is not None:
                raise TranscriptError(f"speaker tag [{speaker}] has no text; write its words after the tag or delete it", source, pending_tag_line)
            flush()
            new = (tag.group("num") or tag.group("name")).upper()
            if new != speaker and segments:
                turn += 1
            speaker, pending_tag_line = new, number
        line = normalise_line(rest)
        if not line:
            if not tag:
                flush()
            continue
        if not buf:
            start_line = number
        buf.append(line)
        pending_tag_line = None
    if pending_tag_line is not None:
        raise TranscriptError(f"speaker tag [{speaker}] has no text; write its words after the tag or delete it", source, pending_tag_line)
    flush()
    if not segments:
        raise TranscriptError("transcript has no text; write some, e.g. '[SPEAKER0] Hello there.'", source)
    speakers = tuple(sorted(first_seen, key=lambda s: speaker_sort_key(s, first_seen)))
    return Script(tuple(segments), speakers, source, notes=text_warnings(text))


_PAUSE_LIKE = re.compile(r"\[\s*pause\b[^\[\]]*\]")
_MUSIC_LIKE = re.compile(r"\[\s*music\s*:[^\[\]]*\]")
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|www\.)\S+$|^[\w.+-]+@[\w-]+(?:\.[\w-]+)+$", re.IGNORECASE)


_UNSPACED = re.compile(r"[\u0e00-\u0e7f\u3000-\u9fff\uf900-\ufaff\uff00-\uffef]")  # Thai, CJK: no spaces between words


def _long_words(line: str, limit: int) -> list[str]:
    """Tokens longer than `limit` characters that hold letters or digits and are not URLs, e-mail addresses or unspaced scripts."""
    return [w for w in line.split() if len(w) > limit and not _URL.match(w) and any(ch.isalnum() for ch in w) and not _UNSPACED.search(w)]


def check_tags(text: str, source: str | None = None) -> None:
    """Refuse text that would be spoken wrongly without a word said: an unclosed `[` tag, a [pause:...] that is not
    seconds in range, an empty [music:], or a "word" of more than MAX_WORD_CHARS characters."""
    for number, line in enumerate(text.split("\n"), start=1):
        if "[" in line:
            _check_brackets(line, source, number)
            for m in _PAUSE_LIKE.finditer(line):
                _check_pause(m.group(0), source, number)
            for m in _MUSIC_LIKE.finditer(line):
                tag = CONTROL_TAG.fullmatch(m.group(0))
                if tag is None or not tag.group("file").strip():
                    raise TranscriptError(f"{m.group(0)} names no file; write [music: FILE] or [music off]", source, number)
        for word in _long_words(line, MAX_WORD_CHARS)[:1]:
            raise TranscriptError(f"a {len(word)}-character word ({word[:20]}...) would be read as one endless sound; "
                                  "add spaces or remove it", source, number)


def _check_brackets(line: str, source: str | None, number: int) -> None:
    opened = None
    for i, ch in enumerate(line):
        if ch == "[":
            if opened is not None:
                raise TranscriptError(f"tag {line[opened:i].strip()!r} is not closed before the next '['; add ']'", source, number)
            opened = i
        elif ch == "]":
            opened = None
    if opened is not None:
        snippet = line[opened: opened + 30].strip()
        raise TranscriptError(f"tag {snippet!r} is not closed; add ']' (or remove the '[' if it is text)", source, number)


def _check_pause(tag: str, source: str | None, number: int) -> None:
    from .options import PAUSE_TAG_MAX

    m = CONTROL_TAG.fullmatch(tag)
    if m is None:
        raise TranscriptError(f"{tag} is not a pause; write [pause] or [pause:SECONDS], e.g. [pause:1.5]", source, number)
    if m.group("secs") and float(m.group("secs")) > PAUSE_TAG_MAX:
        raise TranscriptError(f"{tag} is longer than {PAUSE_TAG_MAX:g} s; give a shorter pause", source, number)


def text_warnings(text: str) -> tuple[Any, ...]:
    """Problems worth a warning (scripts.Note) but not a refusal, each on its line: for now, very long "words"."""
    from .scripts import Note

    found = []
    for number, line in enumerate(text.split("\n"), start=1):
        for word in _long_words(line, LONG_WORD_CHARS):
            found.append(Note(number, "warning", f"a {len(word)}-character word ({word[:20]}...) will be read out as one long sound; "
                                                 "check the text"))
    return tuple(found)


def plain_text(text: str) -> str:
    """Text for engines that cannot voice sound events: markup and bracket tags removed."""
    text = re.sub(r"<SE(?:_[se])?>\[[^\]]*\]</SE(?:_[se])?>", " ", text)
    text = re.sub(r"(?<!\[)\[[a-z][^\]]*\](?!\])", " ", text)  # [[phonemes]] (a lexicon's, for Piper) stay
    return _SPACES.sub(" ", text).strip()
