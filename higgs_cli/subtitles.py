"""Subtitles (SRT or WebVTT) from the manifest's chunk timings, long chunks split into readable cues.

A chunk longer than SUBTITLE_MAX_CHARS characters or SUBTITLE_MAX_SECONDS seconds is split at word
boundaries into the fewest near-equal cues that fit, preferring to break after sentence or clause
punctuation; each cue gets a share of the chunk's time proportional to its number of words (speech
rate is roughly even within a chunk, and no per-word timing exists). Cues are wrapped to lines of
SUBTITLE_LINE_CHARS. Each cue names its speaker (`NAME: ` in SRT, a `<v NAME>` voice span in VTT).
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OutputError
from .files import check_writable
from .options import SUBTITLE_LINE_CHARS, SUBTITLE_MAX_CHARS, SUBTITLE_MAX_SECONDS

SUBTITLE_FORMATS = (".srt", ".vtt")
_MARKUP = re.compile(r"<SE(?:_[se])?>\[[^\]]*\]</SE(?:_[se])?>|\[[a-z][^\]]*\]")


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    speaker: str | None
    text: str


def spoken_text(text: str) -> str:
    """Chunk text as a reader should see it: sound-event markup and tags removed, spaces collapsed."""
    return " ".join(_MARKUP.sub(" ", text).split())


def _groups(words: list[str], parts: int) -> list[list[str]]:
    """Split words into `parts` runs of near-equal length, nudging each break to follow punctuation when close."""
    bounds, target = [0], len(words) / parts
    for k in range(1, parts):
        ideal = round(k * target)
        window = range(max(bounds[-1] + 1, ideal - 2), min(len(words) - (parts - k), ideal + 2) + 1)
        punct = [i for i in window if words[i - 1][-1:] in ".!?;:,"]
        bounds.append(min(punct, key=lambda i: abs(i - ideal)) if punct else max(bounds[-1] + 1, min(ideal, len(words) - (parts - k))))
    bounds.append(len(words))
    return [words[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def chunk_cues(speaker: str | None, text: str, start: float, end: float, max_chars: int = SUBTITLE_MAX_CHARS,
               max_seconds: float = SUBTITLE_MAX_SECONDS) -> list[Cue]:
    """One chunk as one or more cues; time is shared among them in proportion to their word counts."""
    words = spoken_text(text).split()
    if not words or end <= start:
        return []
    parts = max(math.ceil(len(" ".join(words)) / max_chars), math.ceil((end - start) / max_seconds), 1)
    groups = _groups(words, min(parts, len(words)))
    cues, t, per_word = [], start, (end - start) / len(words)
    for i, group in enumerate(groups):
        stop = end if i == len(groups) - 1 else t + per_word * len(group)
        cues.append(Cue(t, stop, speaker, " ".join(group)))
        t = stop
    return cues


def cues_from_chunks(chunks: Iterable[Mapping[str, Any]], offset: float = 0.0, speakers: bool = True) -> list[Cue]:
    """Cues for manifest chunks (`speaker`, `text`, `start`, `end`), shifted by `offset` seconds (e.g. a music intro)."""
    cues: list[Cue] = []
    for chunk in chunks:
        if chunk.get("start") is None or chunk.get("end") is None:
            raise OutputError("chunks have no timings (a dry run?); subtitles need rendered chunks with start and end")
        who = chunk.get("speaker") if speakers else None
        cues += chunk_cues(who, str(chunk.get("text", "")), float(chunk["start"]) + offset, float(chunk["end"]) + offset)
    return cues


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _lines(text: str) -> str:
    return "\n".join(textwrap.wrap(text, SUBTITLE_LINE_CHARS, break_long_words=False, break_on_hyphens=False))


def format_srt(cues: list[Cue]) -> str:
    blocks = []
    for i, cue in enumerate(cues, 1):
        text = f"{cue.speaker}: {cue.text}" if cue.speaker else cue.text
        blocks.append(f"{i}\n{_stamp(cue.start, ',')} --> {_stamp(cue.end, ',')}\n{_lines(text)}\n")
    return "\n".join(blocks)


def format_vtt(cues: list[Cue]) -> str:
    blocks = ["WEBVTT\n"]
    for cue in cues:
        body = _lines(cue.text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if cue.speaker:
            body = f"<v {cue.speaker}>{body}"
        blocks.append(f"{_stamp(cue.start, '.')} --> {_stamp(cue.end, '.')}\n{body}\n")
    return "\n".join(blocks)


def check_subtitle_path(path: Path) -> None:
    """Fail early on an unsupported subtitle extension, or a path that could not be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"--subtitles {path}: is a directory; give a file name such as {path / 'out.srt'}")
    if path.suffix.lower() not in SUBTITLE_FORMATS:
        raise OutputError(f"{path}: unsupported subtitle format {path.suffix or '(none)'!r}; use .srt or .vtt")
    check_writable(path, "--subtitles")


def write_subtitles(chunks: Iterable[Mapping[str, Any]], path: Path, offset: float = 0.0, speakers: bool = True) -> int:
    """Write SRT or VTT (by extension) atomically; returns the number of cues."""
    path = Path(path)
    check_subtitle_path(path)
    cues = cues_from_chunks(chunks, offset, speakers)
    text = format_vtt(cues) if path.suffix.lower() == ".vtt" else format_srt(cues)
    from .files import temp_path

    try:
        tmp = temp_path(path, ".partial")
    except OSError as e:
        raise OutputError(f"--subtitles {path}: cannot be written ({e.strerror}); check that its folder still exists and is writable") from e
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"--subtitles {path}: writing failed ({e.strerror}); check the disk and the folder") from e
    finally:
        tmp.unlink(missing_ok=True)
    return len(cues)
