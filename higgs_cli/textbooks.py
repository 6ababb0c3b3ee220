"""Markdown and plain-text books -> Book: chapters from headings (Markdown) or common chapter lines and counted bare
numbers (plain text), page numbers, footnote marks and Gutenberg boilerplate removed, per-chapter voice hints kept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .books import WORD, Book, Part
from .errors import UsageError
from .textclean import voice_hint

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_MD_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+\S")
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)
_PLAIN_CHAPTER = re.compile(r"^\s*((chapter|book|part|volume|letter|canto)\s+([IVXLC]+|\d+|[a-z]+(-[a-z]+)?)\b.*|"
                            r"(prologue|epilogue|preface|introduction|foreword)\b.*)\s*$", re.I)
# a bare chapter number on its own line: "1", "12.", "II", "XIV." (a chapter only as part of a sequence, see _numbered)
_BARE_NUMBER = re.compile(r"^\s*(?:(?P<digits>\d{1,3})|(?P<roman>[IVXLC]{1,7}))\.?\s*$")
_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}
# a line holding only a page number: digits, or lower-case roman (front matter); upper-case roman lines are chapter headings
_PAGE_NUMBER = re.compile(r"^\s*(?:[-–—]\s*)?(?:\d{1,4}|[ivxlc]{1,6})(?:\s*[-–—])?\s*$|^\s*\[(?i:Pg|Page|p\.)\s*\w+\]\s*$")
_INLINE_PAGE = re.compile(r"\s*\[(?:Pg|Page)\s*\w+\]\s*", re.I)
_ILLUSTRATION = re.compile(r"\[Illustration[^\]]*\]", re.I)
_FOOTNOTE_MARK = re.compile(r"(?<=[\w.,;:!?”\"'])\[(?:\d{1,3}|[*†‡])\]|(?<=[\w.,;”\"'])[¹²³⁴⁵⁶⁷⁸⁹⁰]+")
_GUTENBERG = re.compile(r"^\s*\*\*\*\s*(START|END) OF (THE|THIS) PROJECT GUTENBERG.*$", re.I | re.M)


def _paragraphs(lines: list[str]) -> list[str]:
    out, buf = [], []
    for line in lines + [""]:
        if line.strip():
            buf.append(line.strip())
        elif buf:
            out.append(" ".join(buf))
            buf = []
    return out


def read_markdown(path: Path, text: str) -> Book:
    from .textclean import clean_text

    meta: dict[str, Any] = {}
    found = _FRONT_MATTER.match(text)
    if found:
        from .yamlsafe import load_yaml

        loaded = load_yaml(found.group(1), str(path))
        meta = loaded if isinstance(loaded, dict) else {}
        for key in ("title", "author", "language", "lang"):
            if meta.get(key) is not None and not isinstance(meta[key], str | int | float):
                raise UsageError(f"{path}: front matter `{key}:` is {type(meta[key]).__name__}; write it as one line of text")
            if meta.get(key) is not None:
                meta[key] = str(meta[key])
        text = text[found.end():]
    skipped = found.group(0).count("\n") if found else 0  # lines of front matter, for the line numbers of voice hints
    lines = [piece for number, ln in enumerate(text.split("\n"), start=1 + skipped) for piece in _md_hint(ln, number)]
    levels = [len(m.group(1)) for ln in lines if (m := _MD_HEADING.match(ln))]
    top = min(levels) if levels else 0
    first = next((ln for ln in lines if ln.strip() and not ln.startswith(_HINT_MARK)), "")
    if top and levels.count(top) == 1 and len(levels) > 1 and _MD_HEADING.match(first):
        meta.setdefault("title", _MD_HEADING.match(first).group(2))  # a lone top heading is the title
        lines.remove(first)
        top = min(lv for lv in levels if lv > top) if any(lv > top for lv in levels) else 0
    book = Book(path, meta.get("title"), meta.get("author"), meta.get("language") or meta.get("lang"), [], kind="markdown")
    lines = [ln + "\n" if _MD_ITEM.match(ln) else ln for ln in lines]  # a list item is a paragraph of its own
    body, notes = clean_text("\n".join(lines))
    if notes:
        book.notes.append(f"Markdown: {len(notes)} lines cleaned (emphasis, links, code, lists)")
    current: list[str] = []
    title, hint = "", None
    for line in body.split("\n") + ["# "]:
        if line.startswith(_HINT_MARK):
            hint = _hint(book, line[len(_HINT_MARK):], hint)
            continue
        heading = _MD_HEADING.match(line) if line.strip() != "#" else None
        if (heading and len(heading.group(1)) == top) or line == "# ":
            _add_part(book, title or (book.title or path.stem), _paragraphs(current), hint)
            current, title, hint = [], heading.group(2) if heading else "", None
        elif heading:
            current += ["", heading.group(2), ""]  # a sub-heading is read as its own paragraph
        else:
            current.append(line)
    book.source_words = len(WORD.findall(text))
    return book


def read_plain(path: Path, text: str) -> Book:
    book = Book(path, None, None, None, [], kind="text")
    marks = list(_GUTENBERG.finditer(text))
    head, body, tail = "", text, ""
    if marks:
        start = next((m for m in marks if m.group(1).upper() == "START"), None)
        end = next((m for m in marks if m.group(1).upper() == "END"), None)
        head = text[: start.end()] if start else ""
        body = text[start.end() if start else 0: end.start() if end else len(text)]
        tail = text[end.start():] if end else ""
        found = re.search(r"^Title:\s*(.+)$", head, re.M)
        book.title = found.group(1).strip() if found else None
        found = re.search(r"^Author:\s*(.+)$", head, re.M)
        book.author = found.group(1).strip() if found else None
        found = re.search(r"^Language:\s*(.+)$", head, re.M)
        book.language = {"english": "en"}.get(found.group(1).strip().lower(), found.group(1).strip()) if found else None
    lines = body.split("\n")
    numbered = _numbered(lines, book.notes, len(head.split("\n")) - 1 if head else 0)
    counts: dict[str, int] = {}
    for i, ln in enumerate(lines):
        if ln.strip() and len(ln.strip()) <= 60 and i not in numbered:
            counts[ln.strip()] = counts.get(ln.strip(), 0) + 1
    heads = {ln for ln, n in counts.items() if n >= 3 and ln.upper() == ln and not _PLAIN_CHAPTER.match(ln) and WORD.search(ln)}
    removed = {"page numbers": 0, "running heads": 0, "illustration and footnote marks": 0}
    kept, chapter_lines, kept_lines = [], set(), []  # kept_lines[k]: the source line (0-based) of kept[k]
    offset = head.count("\n")
    for i, ln in enumerate(lines):
        if i in numbered:
            chapter_lines.add(len(kept))
            kept.append(ln.strip())
            kept_lines.append(i + offset)
            continue
        if ln.strip() and _PAGE_NUMBER.match(ln):
            removed["page numbers"] += 1
            continue
        if ln.strip() in heads:
            removed["running heads"] += 1
            continue
        new = _FOOTNOTE_MARK.sub("", _ILLUSTRATION.sub("", _INLINE_PAGE.sub(" ", ln)))
        removed["illustration and footnote marks"] += new != ln
        kept.append(new)
        kept_lines.append(i + offset)
    book.notes += [f"removed {n} {what}" for what, n in removed.items() if n]
    if head:
        book.parts.append(Part("Project Gutenberg header", _paragraphs(head.split("\n")), "licence"))
    title, hint = "", None
    current: list[str] = []
    for i, ln in enumerate(kept + [""]):
        if voice_hint(ln):
            hint = _hint(book, f"{voice_hint(ln)} {kept_lines[i] + 1}", hint)
            continue
        alone = (i == 0 or not kept[i - 1].strip()) and (i + 1 >= len(kept) or not kept[i + 1].strip() or _title_line(kept, i))
        if i < len(kept) and ((_PLAIN_CHAPTER.match(ln) and alone) or i in chapter_lines):
            _add_part(book, title or "Opening", _paragraphs(current), hint)
            title, current, hint = ln.strip(), [], None
            continue
        current.append(ln)
    _add_part(book, title or (book.title or path.stem), _paragraphs(current), hint)
    opening = next((p for p in book.parts if p.kind == "chapter"), None)
    if opening and opening.title == "Opening" and len(opening.paragraphs) == 1 and len(opening.paragraphs[0].split()) <= 10 and not book.title:
        book.title = opening.paragraphs[0].rstrip(".")  # a short line before the first chapter is the book's title
        book.parts.remove(opening)
        if opening.voice and not book.voice:
            book.voice, book.voice_line = opening.voice, opening.voice_line
        book.notes.append(f"title taken from the line before the first chapter: {book.title!r}")
    for part in book.parts:
        if part.kind == "chapter" and part.paragraphs and len(part.paragraphs[0].split()) <= 10 and not part.paragraphs[0].endswith("."):
            sep = " " if part.title.endswith((".", ":")) else ". "
            part.title = f"{part.title}{sep}{part.paragraphs.pop(0)}"  # "CHAPTER I." + "Down the Rabbit-Hole"
    if tail:
        book.parts.append(Part("Project Gutenberg licence", _paragraphs(tail.split("\n")), "licence"))
    book.source_words = len(WORD.findall(text))
    return book


def _numbered(lines: list[str], notes: list[str], offset: int = 0) -> set[int]:
    """Indexes of bare chapter numbers ("1", "II.") standing alone between paragraphs, when they count up from 1.

    One style (digits or roman) whose numbers go 1, 2, 3... (restarting at 1 is allowed: books in parts), each at a
    paragraph boundary (the text before ends a sentence, the text after starts one); a page number breaking a
    sentence, or numbers out of order, mean they are not chapters. What was guessed goes into `notes`.
    """
    found: dict[str, list[tuple[int, int]]] = {"digits": [], "roman": []}
    for i, ln in enumerate(lines):
        m = _BARE_NUMBER.match(ln)
        if m and (i == 0 or not lines[i - 1].strip()) and (i + 1 >= len(lines) or not lines[i + 1].strip() or _title_line(lines, i)):
            style = "digits" if m.group("digits") else "roman"
            value = int(m.group("digits")) if m.group("digits") else _roman_value(m.group("roman"))
            if value:
                found[style].append((i, value))
    for seq in found.values():
        values = [v for _, v in seq]
        if len(seq) < 2 or max(values) < 2:
            continue
        steps = [b == a + 1 or b == 1 for a, b in zip(values, values[1:])]
        bad = next((i for i, _ in seq if not _at_boundary(lines, i)), None)
        if values[0] == 1 and all(steps) and bad is None:
            shown = ", ".join(lines[i].strip() for i, _ in seq[:4]) + (f" ... {lines[seq[-1][0]].strip()}" if len(seq) > 4 else "")
            notes.append(f"chapters guessed from {len(seq)} bare numbers on their own lines ({shown})")
            return {i for i, _ in seq}
        if values[0] == 1 and sum(steps) >= len(steps) / 2:
            line = (bad if bad is not None else seq[steps.index(False) + 1][0]) + 1 + offset
            why = "it breaks a sentence" if bad is not None else "the numbers do not count up"
            notes.append(f"bare numbers on their own lines look like chapter numbers but are not read as chapters: "
                         f"at line {line} {why}")
    return set()


def _roman_value(text: str) -> int:
    """A well-formed upper-case roman numeral's value, else 0 ("IIII", "IC" are not numerals here)."""
    total = 0
    for a, b in zip(text, text[1:] + " "):
        total += -_ROMAN[a] if _ROMAN.get(b, 0) > _ROMAN[a] else _ROMAN[a]
    return total if _to_roman(total) == text else 0


def _to_roman(n: int) -> str:
    out = ""
    for value, letters in ((100, "C"), (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while n >= value:
            out, n = out + letters, n - value
    return out


def _at_boundary(lines: list[str], i: int) -> bool:
    """The text before line i ends a sentence, or is a short title line, or there is none; the text after starts one."""
    j = next((j for j in range(i - 1, -1, -1) if lines[j].strip()), None)
    before = lines[j].strip() if j is not None else ""
    after = next((ln.strip() for ln in lines[i + 1:] if ln.strip()), "")
    title = j is not None and (j == 0 or not lines[j - 1].strip()) and len(before.split()) <= 8  # "A Small Book", "PART ONE"
    ends = not before or title or before[-1] in ".!?\"'”’)]…:;*_-—" or _BARE_NUMBER.match(before) is not None
    return ends and bool(after) and not after[0].islower()


_HINT_MARK = "\x1ehiggs-voice "  # a voice hint's line while Markdown cleaning runs: "\x1ehiggs-voice ava 12"


_HEADING_ATTRS = re.compile(r"\s*\{(?P<attrs>[^{}]*)\}\s*$")  # pandoc's `# Title {#id .class key=value}`
_VOICE_ATTR = re.compile(r"(?:^|\s)voice=(?P<voice>[^\s}]+)")


def _md_hint(line: str, number: int) -> list[str]:
    """A Markdown line with its voice hint made a marker line: a hint line, or a heading's `{voice=ava}` attribute
    (the heading is kept without its attributes, and the marker follows it)."""
    hint = voice_hint(line)
    if hint:
        return [f"{_HINT_MARK}{hint} {number}"]
    heading = _MD_HEADING.match(line)
    attrs = _HEADING_ATTRS.search(heading.group(2)) if heading else None
    if heading and attrs:
        voice = _VOICE_ATTR.search(attrs.group("attrs"))
        bare = f"{heading.group(1)} {heading.group(2)[: attrs.start()]}"
        return [bare, f"{_HINT_MARK}{voice.group('voice')} {number}"] if voice else [bare]
    return [line]


def _add_part(book: Book, title: str, paragraphs: list[str], hint: tuple[str, int] | None) -> None:
    """Close a part; a voice hint with no text before any chapter is the whole book's narrator."""
    if paragraphs:
        book.parts.append(Part(title, paragraphs, voice=hint[0] if hint else None, voice_line=hint[1] if hint else None))
        if hint:
            book.notes.append(f"line {hint[1]}: voice hint: {hint[0]} narrates {title!r}")
    elif hint and not any(p.kind == "chapter" for p in book.parts) and book.voice is None:
        book.voice, book.voice_line = hint
        book.notes.append(f"line {hint[1]}: voice hint: {hint[0]} narrates every chapter without its own hint")
    elif hint:
        book.notes.append(f"line {hint[1]}: voice hint {hint[0]} is in a part with no text; not used")


def _hint(book: Book, found: str, current: tuple[str, int] | None) -> tuple[str, int]:
    """A voice hint (`NAME LINE`) for the part being read; a second one in the same part is said, and the first kept."""
    name, line = found.rsplit(" ", 1)
    if current is not None:
        book.notes.append(f"line {line}: a second voice hint ({name}) in one chapter; the chapter keeps {current[0]} (line {current[1]})")
        return current
    return name, int(line)


def _title_line(lines: list[str], i: int) -> bool:
    """A chapter line followed directly by a short title line ("CHAPTER I." / "Down the Rabbit-Hole")."""
    return i + 2 < len(lines) and len(lines[i + 1].split()) <= 10 and not lines[i + 2].strip()
