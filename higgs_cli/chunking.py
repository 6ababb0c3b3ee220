"""Script segments -> chunks the engine renders one at a time; pure, and never loses a character.

Methods:
  none       one chunk per speaker turn, never split
  speaker    one chunk per speaker turn, split at sentence ends when over the word budget
  paragraph  one chunk per paragraph, split at sentence ends when over the word budget
  sentence   one chunk per sentence (a sentence over the budget is split at clauses)

Splits prefer sentence ends, then clause punctuation, then word (or CJK character) boundaries,
and never fall inside a sound-event tag or between a `<SE_s>` start and its `<SE_e>` end.
Control tags (`[pause]`, `[music: f]`, `[music off]`) always end a chunk; they are kept, unspoken,
in the `lead`/`tail` around a chunk's text, so `lead + text + tail` still tiles the input.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import UsageError
from .options import CHUNK_METHODS
from .transcript import CONTROL_TAG, Control, Script, Segment, controls

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_WORDLIKE = re.compile(r"\w")
LONG_TOKEN = 24  # characters; a longer run without spaces counts (and splits) as several words

# Candidate cut positions per level; a cut sits after the whitespace that follows the mark.
_LEVELS = (
    re.compile(rf"[.!?]+[\"')\]]*(?:\s+|(?=[{_CJK}]))"),  # sentence ends
    re.compile(rf"[,;:]+[\"')\]]*(?:\s+|(?=[{_CJK}]))|\s+-+\s+"),  # clauses
    re.compile(rf"\s+|(?<=[{_CJK}])(?=\S)|(?<=\S)(?=[{_CJK}])"),  # words / CJK characters
)
_PROTECTED = re.compile(r"<SE_s>\[([^\]]*)\]</SE_s>.*?<SE_e>\[\1\]</SE_e>|<SE(?:_[se])?>\[[^\]]*\]</SE(?:_[se])?>", re.S)


@dataclass(frozen=True)
class Chunk:
    """A piece of one speaker's text rendered in one engine call."""

    index: int
    speaker: str
    text: str  # stripped of surrounding whitespace and control tags
    tail: str  # what followed it in the source: whitespace and control tags ("" at paragraph ends)
    line: int  # transcript line where the chunk's first paragraph starts
    turn: int
    paragraph: int  # index of the first source segment (paragraph) in the script
    words: int
    lead: str = ""  # control tags (and whitespace) before the text, at the start of a unit
    written: str | None = None  # the words as written when `text` was rewritten for the engine (numbers, lexicon)
    heard: str | None = None  # what a listener should hear, when the lexicon made `text` differ (numbers read out, no lexicon)

    @property
    def controls_before(self) -> list[Control]:
        return controls(self.lead)

    @property
    def controls_after(self) -> list[Control]:
        return controls(self.tail)


def count_words(text: str) -> int:
    """Words for budgeting: space-separated tokens, one per CJK character, long runs count extra.

    Tokens of punctuation alone ("," after CJK text, "-") are free.
    """
    return sum(-(-len(t) // LONG_TOKEN) for t in _TOKEN.findall(text) if _WORDLIKE.search(t))


def _protected_spans(text: str) -> tuple[list[int], list[int]]:
    spans = [(m.start(), m.end()) for m in _PROTECTED.finditer(text)]
    return [a for a, _ in spans], [b for _, b in spans]


def _cuts(text: str, lo: int, hi: int, level: int, spans: tuple[list[int], list[int]]) -> list[int]:
    starts, ends = spans
    cuts = []
    if level < len(_LEVELS):
        found = (m.end() for m in _LEVELS[level].finditer(text, lo, hi))
    else:  # last resort inside an over-long token: fixed-size pieces
        found = iter(range(lo + LONG_TOKEN, hi, LONG_TOKEN))
    for c in found:
        if not lo < c < hi:
            continue
        i = bisect.bisect_left(starts, c) - 1  # the protected span starting before c, if any
        if i >= 0 and c < ends[i]:
            continue
        cuts.append(c)
    return cuts


def split_text(text: str, budget: int | None, level: int = 0) -> list[tuple[int, int]]:
    """Cut `text` into (start, end) spans that tile it, each within `budget` words where possible."""
    spans = _protected_spans(text)
    return _split(text, 0, len(text), budget, level, spans)


def _split(text: str, lo: int, hi: int, budget: int | None, level: int, spans) -> list[tuple[int, int]]:
    if budget is None or level > len(_LEVELS) or count_words(text[lo:hi]) <= budget:
        return [(lo, hi)]
    bounds = [lo, *_cuts(text, lo, hi, level, spans), hi]
    out: list[tuple[int, int]] = []
    start, words = None, 0
    for a, b in zip(bounds, bounds[1:]):
        n = count_words(text[a:b])
        if n > budget:
            if start is not None:
                out.append((start, a))
            out.extend(_split(text, a, b, budget, level + 1, spans))
            start, words = None, 0
        elif start is not None and words + n <= budget:
            words += n
        else:
            if start is not None:
                out.append((start, a))
            start, words = a, n
    if start is not None:
        out.append((start, hi))
    return out


def _pieces(text: str, method: str, budget: int | None) -> list[tuple[int, int, int, int]]:
    """(lead start, text start, text end, tail end) per chunk; control tags force a boundary."""
    starts: list[int] = []
    pos = 0
    for region_end, next_pos in [*((m.start(), m.end()) for m in CONTROL_TAG.finditer(text)), (len(text), len(text))]:
        region = text[pos:region_end]
        offset = pos + len(region) - len(region.lstrip())
        body = region.strip()
        if body:
            spans = _sentences(body, budget) if method == "sentence" else split_text(body, budget)
            starts.extend(offset + a for a, _ in spans)
        pos = next_pos
    out = []
    for i, start in enumerate(starts):
        span_end = starts[i + 1] if i + 1 < len(starts) else len(text)
        lead_start = 0 if i == 0 else start
        stop = CONTROL_TAG.search(text, start, span_end)
        text_end = len(text[start:stop.start() if stop else span_end].rstrip()) + start
        out.append((lead_start, start, text_end, span_end))
    return out


def _sentences(text: str, budget: int | None) -> list[tuple[int, int]]:
    spans = _protected_spans(text)
    bounds = [0, *_cuts(text, 0, len(text), 0, spans), len(text)]
    out: list[tuple[int, int]] = []
    for a, b in zip(bounds, bounds[1:]):
        out.extend(_split(text, a, b, budget, 1, spans))
    return out


def _turns(segments: Iterable[tuple[int, Segment]]) -> list[list[tuple[int, Segment]]]:
    groups: list[list[tuple[int, Segment]]] = []
    for item in segments:
        # a `# Heading` is a chunk of its own, in `dialogue` as in `generate`: a chapter starts there
        if groups and groups[-1][-1][1].turn == item[1].turn and not item[1].heading and not groups[-1][-1][1].heading:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def chunk_script(script: Script, method: str, max_words: int | None) -> list[Chunk]:
    """Plan the chunks of a script. Joining `text + tail` of a unit's chunks gives its text back."""
    if method not in CHUNK_METHODS:
        raise UsageError(f"unknown chunk method {method!r}; use one of: {', '.join(CHUNK_METHODS)}")
    if max_words is not None and max_words < 1:
        raise UsageError("--max-words must be at least 1")
    budget = None if method == "none" else max_words
    units: list[tuple[int, Segment, str]] = []  # (first paragraph, segment, text of the unit)
    if method in ("speaker", "none"):
        for group in _turns(enumerate(script.segments)):
            first_idx, first = group[0]
            units.append((first_idx, first, " ".join(s.text for _, s in group)))
    else:
        units = [(i, s, s.text) for i, s in enumerate(script.segments)]
    chunks: list[Chunk] = []
    for paragraph, seg, text in units:
        for lead, a, b, end in _pieces(text, method, budget):
            body = text[a:b]
            chunks.append(Chunk(len(chunks), seg.speaker, body, text[b:end], seg.line, seg.turn, paragraph,
                                count_words(body), text[lead:a]))
    return chunks


def chains(chunks: list[Chunk] | tuple[Chunk, ...], script: Script, words: int = 0) -> list[list[int]]:
    """Split chunks into chains: runs whose rolling context stays inside them, so chains render independently.

    A chain starts at every `# Heading` (a chapter) and, when `words` > 0, at the first paragraph start
    after its chain reached `words` words. Content-defined, so a chunk's context never depends on how
    many chains render at once. Returns the chunk positions of each chain, in order; they tile the chunks.
    """
    out: list[list[int]] = []
    size = 0
    for i, chunk in enumerate(chunks):
        new_paragraph = i == 0 or chunk.paragraph != chunks[i - 1].paragraph
        chapter = new_paragraph and script.segments[chunk.paragraph].heading
        if not out or chapter or (new_paragraph and 0 < words <= size):
            out.append([])
            size = 0
        out[-1].append(i)
        size += chunk.words
    return out
