"""Books in: EPUB (2 and 3), Markdown and plain-text books -> parts with titles and kinds -> one transcript per chapter
plus a `book.yaml` that `higgs build` takes as it is.

EPUBs are read with ebooklib (spine order, TOC titles, metadata, cover) and each document's XHTML with
BeautifulSoup: a spine document starts a part, titled by the first TOC entry that points into it; further
TOC entries inside one document split it at their anchors. Footnote markers and bodies, page numbers and
images are dropped; paragraphs are kept. Front matter (title page, contents, short parts before the first
real chapter) and back matter (licences such as Project Gutenberg's, colophons) are written too, but marked
`skip: true` in book.yaml, so they are not narrated unless the user says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .options import WORDS_PER_MINUTE
from .textclean import voice_hint

BOOK_SUFFIXES = (".epub", ".md", ".markdown", ".txt")
_BLOCKS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "dt", "dd", "td", "th", "div", "section",
           "article", "figcaption", "caption", "address", "header", "footer", "aside", "tr", "table", "ul", "ol", "dl",
           "figure", "main", "nav", "center", "body", "poem", "stanza"}
_DROP = {"script", "style", "head", "img", "svg", "math", "object", "video", "audio", "iframe", "title"}
_FRONT_TITLES = re.compile(r"^\s*(contents|table of contents|title\s*page|copyright.*|cover|half\s*title|imprint|"
                           r"list of illustrations|illustrations|also by .*|(original )?transcriber.s notes?:?|a note on the text)\s*$", re.I)
_BACK_TITLES = re.compile(r"licen[cs]e|colophon|about this (e-?)?book|project gutenberg|imprint|endnotes?$|copyright", re.I)
_LICENCE_TEXT = re.compile(r"\*\*\*\s*(START|END) OF (THE|THIS) PROJECT GUTENBERG|Project Gutenberg(™|-tm)? License", re.I)
_CHAPTERISH = re.compile(r"^\s*(chapter|book|part|volume|canto|act|prologue|epilogue|preface|foreword|introduction|"
                         r"[IVXLC]+\b|\d+\b)", re.I)
_WORD = re.compile(r"\w+")
FRONT_MAX_WORDS = 120  # a short part before the first real chapter (dedication, edition line) is front matter
EPUB_MAX_UNPACKED = 1 << 30  # ebooklib holds every member in memory; illustrated books are tens of MB


@dataclass
class Part:
    """A titled run of paragraphs: a chapter, or front/back matter."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    kind: str = "chapter"  # chapter, front, licence, back
    voice: str | None = None  # the narrator's voice for this part, from a voice hint in the text (`<!-- voice: ava -->`)
    voice_line: int | None = None  # where that hint is in the source

    @property
    def words(self) -> int:
        return sum(len(_WORD.findall(p)) for p in self.paragraphs)


@dataclass
class Book:
    """A parsed book: metadata, parts in reading order, and notes on what was removed or guessed."""

    source: Path
    title: str | None
    author: str | None
    language: str | None
    parts: list[Part]
    cover: tuple[bytes, str] | None = None  # image bytes and extension
    source_words: int = 0  # words in the source's text, for the import's accounting
    notes: list[str] = field(default_factory=list)
    kind: str = "epub"  # epub, markdown or text: only an EPUB's short leading parts are guessed to be front matter
    voice: str | None = None  # the narrator for every part without its own hint (a hint before the first chapter)
    voice_line: int | None = None

    @property
    def words(self) -> int:
        return sum(p.words for p in self.parts)


def read_book(path: Path) -> Book:
    """Read an EPUB, Markdown or plain-text book; anything else is a one-line error naming the fix."""
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; give the book file (.epub, .md or .txt)")
    if not path.is_file():
        raise UsageError(f"{path}: book not found; give an .epub, .md or .txt file")
    suffix = path.suffix.lower()
    if suffix == ".epub":
        book = _read_epub(path)
    elif suffix in (".md", ".markdown", ".txt"):
        from .transcript import decode_transcript

        text = decode_transcript(path.read_bytes(), str(path))
        book = _read_markdown(path, text) if suffix != ".txt" else _read_plain(path, text)
    else:
        raise UsageError(f"{path}: not a book format higgs imports; give an .epub, .md or .txt file")
    _classify(book)
    if not any(p.kind == "chapter" and p.words for p in book.parts):
        raise UsageError(f"{path}: no chapter text found; is the book empty or image-only?")
    return book


# --- EPUB ---------------------------------------------------------------------------------------------
def _read_epub(path: Path) -> Book:
    import warnings

    import ebooklib
    from ebooklib import epub

    _refuse_drm(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = epub.read_epub(str(path), options={"ignore_ncx": False})
    except Exception as e:  # noqa: BLE001 - ebooklib raises zipfile, KeyError, lxml and its own errors
        raise UsageError(f"{path}: not a readable EPUB ({e.__class__.__name__}: {str(e)[:120]}); check the file") from e
    book = Book(path, _meta(doc, "title"), _meta(doc, "creator"), _meta(doc, "language"), [], _cover(doc, ebooklib))
    toc = _toc_entries(doc.toc)
    firsts: dict[str, str] = {}
    anchors: dict[tuple[str, str], str] = {}
    for href, fragment, title in toc:
        if href not in firsts:
            firsts[href] = title
        elif fragment:
            anchors[(href, fragment)] = title
    for idref, _linear in doc.spine:
        item = doc.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        name = item.get_name()
        here = {frag: title for (href, frag), title in anchors.items() if href == name}
        _read_document(book, item.get_content(), firsts.get(name), here)
    book.parts = [p for p in book.parts if p.paragraphs]
    return book


def _refuse_drm(path: Path) -> None:
    """An EPUB whose documents are encrypted (DRM) would import as noise; font obfuscation alone is fine. One that
    unpacks to more than EPUB_MAX_UNPACKED (a zip bomb, or not a book) is refused before ebooklib holds it in memory."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            unpacked = sum(info.file_size for info in z.infolist())
            if unpacked > EPUB_MAX_UNPACKED:
                raise UsageError(f"{path}: unpacks to {unpacked >> 20} MB, more than the {EPUB_MAX_UNPACKED >> 20} MB any book needs "
                                 "(a damaged file or a zip bomb); check the file")
            if "META-INF/encryption.xml" not in z.namelist():
                return
            listing = z.read("META-INF/encryption.xml").decode("utf-8", "replace")
    except (zipfile.BadZipFile, OSError) as e:
        raise UsageError(f"{path}: not a readable EPUB ({e}); check the file") from e
    if re.search(r"URI=\"[^\"]+\.(x?html?|ncx|opf)\"", listing):
        raise UsageError(f"{path}: the book's text is encrypted (DRM); higgs can only read DRM-free EPUBs")


def _meta(doc: Any, name: str) -> str | None:
    values = doc.get_metadata("DC", name)
    return " ".join(str(values[0][0]).split()) if values and values[0][0] else None


def _cover(doc: Any, ebooklib: Any) -> tuple[bytes, str] | None:
    """The cover image: EPUB 3 `cover-image`, EPUB 2 `<meta name="cover">`, or ebooklib's cover item."""
    ids = [attrs.get("content") for _, attrs in doc.get_metadata("OPF", "meta") if attrs and attrs.get("name") == "cover"]
    for item in doc.get_items():
        props = getattr(item, "properties", None) or []
        if item.get_type() == ebooklib.ITEM_COVER or "cover-image" in props or item.get_id() in ids:
            if item.media_type and item.media_type.startswith("image/"):
                return item.get_content(), Path(item.get_name()).suffix.lower() or ".jpg"
    return None


def _toc_entries(toc: Any) -> list[tuple[str, str, str]]:
    """(document href, fragment, title) for every TOC entry, in order (nested sections flattened)."""
    out = []
    for entry in toc if isinstance(toc, tuple | list) else [toc]:  # ebooklib gives a bare Link for a one-entry TOC
        if isinstance(entry, tuple | list):
            section, children = entry[0], entry[1]
            if getattr(section, "href", None):
                out.append(_link(section))
            out += _toc_entries(children)
        elif getattr(entry, "href", None):
            out.append(_link(entry))
    return [e for e in out if e[2]]


def _link(link: Any) -> tuple[str, str, str]:
    from urllib.parse import unquote

    href, _, fragment = str(link.href).partition("#")
    return unquote(href), fragment, " ".join(str(link.title or "").split())


class _Reader:
    """Walks one XHTML document in reading order, emitting paragraphs and starting parts at TOC anchors."""

    def __init__(self, book: Book, anchors: dict[str, str]):
        self.book, self.anchors = book, anchors
        self.dropped: dict[str, int] = {}

    def start(self, title: str, kind: str = "chapter") -> None:
        self.book.parts.append(Part(title, [], kind))

    def walk(self, element: Any) -> None:
        from bs4 import NavigableString, Tag

        for child in element.children:
            if isinstance(child, NavigableString):
                if type(child) is NavigableString and child.strip():
                    self.emit(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            self._boundary(child)
            if self._removed(child):
                continue
            if child.name in _BLOCKS and not any(d.name in _BLOCKS for d in child.find_all(True)):
                for inner in child.find_all(id=True):
                    self._boundary(inner)
                self._strip(child)
                self.emit(child.get_text(" "))
            elif child.name in _BLOCKS:
                self.walk(child)
            else:
                self._strip(child)
                self.emit(child.get_text(" "))

    def _boundary(self, tag: Any) -> None:
        ident = tag.get("id")
        if ident and ident in self.anchors:
            self.start(self.anchors.pop(ident))

    def _removed(self, tag: Any) -> bool:
        """Footnote bodies, page numbers, images and boilerplate sections are not narrated."""
        kind = _semantic(tag)
        if tag.name in _DROP:
            return True
        if kind & {"footnote", "endnote", "footnotes", "endnotes", "rearnote", "doc-footnote", "doc-endnotes", "footnotes-section"}:
            self.dropped["footnotes"] = self.dropped.get("footnotes", 0) + 1
            return True
        if kind & {"pagebreak", "doc-pagebreak", "pagenum", "page-number"}:
            self.dropped["page numbers"] = self.dropped.get("page numbers", 0) + 1
            return True
        if kind & {"running-head", "runninghead", "running-header", "runhead"}:
            self.dropped["running heads"] = self.dropped.get("running heads", 0) + 1
            return True
        if "pg-boilerplate" in kind:  # Project Gutenberg's header/footer: a licence part of its own
            before = self.book.parts[-1] if self.book.parts else None
            self.start("Project Gutenberg licence and notes", "licence")
            self.walk(tag)
            self.start(before.title if before is not None and not before.paragraphs else "")
            return True
        return False

    def _strip(self, tag: Any) -> None:
        for inner in tag.find_all(True):
            if inner.decomposed:
                continue
            kind = _semantic(inner)
            if inner.name in _DROP or kind & {"pagebreak", "doc-pagebreak", "pagenum", "page-number"}:
                inner.decompose()
            elif kind & {"noteref", "doc-noteref", "fnanchor", "footnote-ref", "footnoteref"} or (
                    inner.name == "sup" and inner.find("a", href=True) is not None):
                self.dropped["footnote markers"] = self.dropped.get("footnote markers", 0) + 1
                inner.decompose()
            elif inner.name == "br":
                inner.replace_with(" ")

    def emit(self, text: str) -> None:
        text = " ".join(text.split())
        if not text or not _WORD.search(text):
            return
        if not self.book.parts:
            self.start("")
        self.book.parts[-1].paragraphs.append(text)


def _semantic(tag: Any) -> set[str]:
    """epub:type, role and class words of an element, lower-cased."""
    words = set()
    for attr in ("epub:type", "type", "role", "class"):
        value = tag.get(attr)
        if value:
            words.update(w.lower() for w in (value if isinstance(value, list) else str(value).split()))
    return words


def _read_document(book: Book, content: bytes, title: str | None, anchors: dict[str, str]) -> None:
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():  # XHTML through the forgiving HTML parser: EPUBs in the wild are not all valid XML
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(content, "lxml")
    body = soup.body or soup
    book.source_words += len(_WORD.findall(" ".join(t for t in body.find_all(string=True) if t.parent.name not in _DROP)))
    reader = _Reader(book, dict(anchors))
    reader.start(title or "")
    first = len(book.parts) - 1
    reader.walk(body)
    for part in book.parts[first:]:
        if not part.title:
            part.title = _first_heading(part) or f"Section {len(book.parts)}"
        _drop_repeated_title(part)
    for what, n in reader.dropped.items():
        book.notes.append(f"{book.parts[first].title}: removed {n} {what}")


def _first_heading(part: Part) -> str | None:
    return part.paragraphs[0][:80] if part.paragraphs and len(part.paragraphs[0].split()) <= 12 else None


def _drop_repeated_title(part: Part) -> None:
    """The chapter's own heading paragraph is replaced by its `# Title` line (same words)."""
    if part.paragraphs and _WORD.findall(part.paragraphs[0].lower()) == _WORD.findall(part.title.lower()):
        part.paragraphs.pop(0)


# --- Markdown and plain text ------------------------------------------------------------------------------
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


def _read_markdown(path: Path, text: str) -> Book:
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
    book.source_words = len(_WORD.findall(text))
    return book


def _read_plain(path: Path, text: str) -> Book:
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
    heads = {ln for ln, n in counts.items() if n >= 3 and ln.upper() == ln and not _PLAIN_CHAPTER.match(ln) and _WORD.search(ln)}
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
    book.source_words = len(_WORD.findall(text))
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


# --- front and back matter ---------------------------------------------------------------------------------
def _classify(book: Book) -> None:
    """Mark licences, front matter and back matter; everything else is a chapter."""
    first_real = None
    for i, part in enumerate(book.parts):
        text = " ".join(part.paragraphs[:40])
        if part.kind == "licence" or _LICENCE_TEXT.search(text) or _BACK_TITLES.search(part.title):
            part.kind = "licence" if (part.kind == "licence" or _LICENCE_TEXT.search(text) or "licen" in part.title.lower()) else "back"
        elif _FRONT_TITLES.match(part.title) or _is_contents(part):
            part.kind = "front"
        elif first_real is None and (part.words >= FRONT_MAX_WORDS or _CHAPTERISH.match(part.title)):
            first_real = i
    for i, part in enumerate(book.parts if book.kind == "epub" else []):
        if part.kind == "chapter" and first_real is not None and i < first_real and part.words < FRONT_MAX_WORDS:
            part.kind = "front"
        if part.kind == "chapter" and book.title and _same_words(part.title, book.title) and part.words < FRONT_MAX_WORDS:
            part.kind = "front"  # the title page
    if not book.source_words:
        book.source_words = book.words


def _same_words(a: str, b: str) -> bool:
    return _WORD.findall(a.lower()) == _WORD.findall(b.lower())


def _is_contents(part: Part) -> bool:
    """A table of contents: mostly short chapter-like lines ("CHAPTER 3. The Spouter-Inn.")."""
    listed = sum(1 for p in part.paragraphs if len(p.split()) <= 10 and _CHAPTERISH.match(p))
    return listed >= 5 and listed >= 0.6 * len(part.paragraphs)


# --- writing the project -----------------------------------------------------------------------------------
MARKER = "# written by `higgs import`"


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "part"


_PAUSE = re.compile(r"\[pause(?::\s*\d+(?:\.\d+)?\s*)?\]")  # a real pause (SSML <break> in a Markdown book becomes one)


def as_text(text: str) -> str:
    """Book prose as transcript text: square brackets ("[sic]", "[Editor: ...]", a stray "[") are read as words, never
    taken as speaker tags, sound events or control tags; only a well-formed [pause] is kept."""
    pieces = _PAUSE.split(text)
    pauses = _PAUSE.findall(text)
    plain = [p.replace("[", "(").replace("]", ")") for p in pieces]
    return "".join(x for pair in zip(plain, [*pauses, ""], strict=True) for x in pair)


def transcript_text(part: Part) -> str:
    """A part as our transcript: `# Title` (a chapter mark, read by the narrator), then its paragraphs."""
    lines = [f"# {as_text(part.title)}", ""] if part.title else []
    for paragraph in part.paragraphs:
        if paragraph.startswith("#"):
            paragraph = paragraph.lstrip("#").lstrip()  # never a heading by accident
        lines += [as_text(paragraph), ""]
    return "\n".join(lines)


def write_project(book: Book, out_dir: Path, voice: str | None = None, engine: str = "auto", include_all: bool = False,
                  force: bool = False, edited_hint: str | None = None) -> dict[str, Any]:
    """Write chapters/NN-title.txt per part and book.yaml; returns the summary the CLI prints.

    Nothing the user edited (or wrote) is overwritten without `force`; all files are staged first and renamed into
    place together, so an error or a signal leaves the folder as it was."""
    project = out_dir / "book.yaml"
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {out_dir}: is a file; give a folder for the project")
    if project.exists() and not force and not project.read_text(encoding="utf-8", errors="replace").startswith(MARKER):
        raise UsageError(f"{project} exists and was not written by `higgs import`; choose another -o folder or add --force")
    check_voice_hints(book)
    if voice and book.voice and voice != book.voice:
        book.notes.append(f"line {book.voice_line}: the book's voice hint ({book.voice}) is overridden by --voice {voice}")
    files, summary = _project_files(book, out_dir, project, voice or book.voice, engine, include_all)
    if not force:
        _refuse_edits(out_dir, files, edited_hint or "import into a new -o folder, or add --force to overwrite your edits")
    stamp = {"book": _sha256(book.source), "version": IMPORT_VERSION, "files": {name: _digest(data) for name, data in files.items()},
             "summary": summary}
    try:
        _commit(out_dir, files, json.dumps(stamp, ensure_ascii=False, indent=1).encode("utf-8"))
    except OSError as e:
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        raise UsageError(f"-o {out_dir}: cannot write the project{where} ({e.strerror or e}); choose a writable folder") from e
    return summary


def _project_files(book: Book, out_dir: Path, project: Path, voice: str | None, engine: str,
                   include_all: bool) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every file of the project (relative name -> bytes) and the summary."""
    files: dict[str, bytes] = {}
    rows, skipped, words, bracketed = [], [], 0, 0
    for i, part in enumerate(book.parts, start=1):
        name = f"chapters/{i:02d}-{_slug(part.title)}.txt"
        files[name] = transcript_text(part).encode("utf-8")
        bracketed += sum(1 for p in part.paragraphs if "[" in p or "]" in p)
        narrated = include_all or part.kind == "chapter"
        rows.append({"file": name, "title": part.title, "kind": part.kind, "words": part.words, "skip": not narrated,
                     **({"voice": part.voice} if part.voice else {})})
        if narrated:
            words += part.words
        else:
            skipped.append({"title": part.title, "kind": part.kind, "words": part.words, "file": name})
    notes = book.notes + ([f"{bracketed} paragraphs hold square brackets; they are read as text, not as tags"] if bracketed else [])
    cover = None
    if book.cover and book.cover[0].startswith((b"\xff\xd8", b"\x89PNG\r\n\x1a\n")):  # what m4b covers take (containers.py)
        cover = "cover.jpg" if book.cover[0].startswith(b"\xff\xd8") else "cover.png"
        files[cover] = book.cover[0]
    elif book.cover:  # GIF, SVG, WebP...: `higgs build` would refuse the project this import writes
        notes.append(f"the book's cover ({book.cover[1] or 'unknown type'}) is not a JPEG or PNG, so it is not used; "
                     "convert it to .jpg or .png and set `cover:` in book.yaml")
    files["book.yaml"] = _book_yaml(book, rows, cover, voice, engine).encode("utf-8")
    written = sum(len(_WORD.findall(transcript_text(p))) for p in book.parts)
    return files, {"project": str(project), "title": book.title, "author": book.author, "language": book.language,
                   "cover": cover, "chapters": [r for r in rows if not r["skip"]], "skipped": skipped, "words": words,
                   "minutes": round(words / WORDS_PER_MINUTE, 1), "source_words": book.source_words, "written_words": written,
                   "notes": notes}


def check_voice_hints(book: Book) -> None:
    """Every voice a hint names is a known voice, before anything is written or rendered (one line naming the fix)."""
    from .errors import VoiceError
    from .voices import resolve

    hints = [(book.voice, book.voice_line)] + [(p.voice, p.voice_line) for p in book.parts]
    for name, line in hints:
        if not name:
            continue
        where = f"{book.source}:{line}"
        if "/" in name or "\\" in name or Path(name).suffix:
            raise UsageError(f"{where}: voice hint {name!r}: a hint names a voice, not a file; add the clip first "
                             f"(higgs voices add NAME --audio CLIP --text ...) and name it in the hint")
        try:
            resolve(name)
        except VoiceError as e:
            raise UsageError(f"{where}: voice hint: {e}") from e


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _refuse_edits(out_dir: Path, files: dict[str, bytes], hint: str) -> None:
    """A file this import would change that is not what the last import wrote is the user's: refuse, naming it."""
    record = (_import_stamp(out_dir / IMPORT_STAMP) or {}).get("files", {})
    for name, data in files.items():
        path = out_dir / name
        if not path.is_file():
            if path.exists():
                raise UsageError(f"{path} is in the way (not a file); move it, or import into a new -o folder")
            continue
        current = path.read_bytes()
        if current != data and record.get(name) != _digest(current):
            raise UsageError(f"{path} was changed since `higgs import` wrote it (or is not its file); re-importing would "
                             f"overwrite it: {hint}")


def _commit(out_dir: Path, files: dict[str, bytes], stamp: bytes) -> None:
    """Stage every changed file beside its target, then rename them all into place; on any error or signal the temps
    (and folders this call made) are removed. Unchanged files are not touched, so `higgs build` sees them unchanged."""
    import os

    made = [d for d in (out_dir, out_dir / "chapters") if not d.exists()]
    staged: list[tuple[Path, Path]] = []
    try:
        (out_dir / "chapters").mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            path = out_dir / name
            if path.is_file() and path.read_bytes() == data:
                continue
            tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
            staged.append((tmp, path))
            tmp.write_bytes(data)
        for tmp, path in staged:
            os.replace(tmp, path)
        tmp = out_dir / f"{IMPORT_STAMP}.{os.getpid()}.partial"
        staged.append((tmp, out_dir / IMPORT_STAMP))
        tmp.write_bytes(stamp)
        os.replace(tmp, out_dir / IMPORT_STAMP)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for folder in reversed(made):
            try:
                folder.rmdir()  # only when still empty: nothing renamed into it
            except OSError:
                pass
        raise


def _book_yaml(book: Book, rows: list[dict[str, Any]], cover: str | None, voice: str | None, engine: str) -> str:
    def q(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML scalar

    lines = [f"{MARKER} from {book.source.name}; edit freely (set skip: false to narrate a skipped part)"]
    for key, value in (("title", book.title), ("author", book.author), ("language", book.language), ("cover", cover)):
        if value:
            lines.append(f"{key}: {q(value)}")
    lines += [f"engine: {q(engine)}", f"output: {q(_slug(book.title or book.source.stem, 60) + '.m4b')}"]
    if voice:
        lines += ["voices:", f"  NARRATOR: {q(voice)}"]
    lines.append("chapters:")
    for row in rows:
        skip = f", skip: true}}  # {row['kind']}, {row['words']} words" if row["skip"] else "}"
        voice = f", voice: {q(row['voice'])}" if row.get("voice") else ""
        lines.append(f"  - {{file: {q(row['file'])}, title: {q(row['title'])}{voice}{skip}")
    return "\n".join(lines) + "\n"


IMPORT_STAMP = ".higgs-import.json"  # in BOOK.higgs/: the book's hash and what the import wrote, so a rebuild can reuse it
IMPORT_VERSION = 2  # raise when the import writes different transcripts for the same book


def project_for(book_path: Path) -> tuple[Path, dict[str, Any]]:
    """`higgs build BOOK.epub`: import into BOOK.higgs/ beside the book and return its book.yaml with the import summary.

    When the book file is byte for byte the one imported last time (sha256), the import is reused as it is: nothing
    is read or written, so edits to BOOK.higgs/ stay and only what changed re-renders (`summary["reused"]`). When the
    book changed, it is imported again, unless a file the import wrote was edited since: then the user's edit is
    kept and the build stops, naming the file and the fix.
    """
    out = book_path.parent / f"{book_path.stem}.higgs"
    hint = f"to build with your edits, run `higgs build {out / 'book.yaml'}`; to re-import, remove {out}"
    digest = _sha256(book_path)
    stamp = _import_stamp(out / IMPORT_STAMP)
    if stamp is not None:
        state = {name: _file_state(out / name, sha) for name, sha in stamp["files"].items()}
        if stamp.get("book") == digest and stamp.get("version") == IMPORT_VERSION and "missing" not in state.values():
            edited = sorted(name for name, st in state.items() if st == "edited")
            return out / "book.yaml", {**stamp["summary"], "reused": True, "edited": edited}
        edited = next((name for name, st in state.items() if st == "edited"), None)
        if edited is not None:
            raise UsageError(f"{out / edited} was edited after `higgs build {book_path.name}` imported the book, and the book has "
                             f"changed since; to keep the edit, import the new book elsewhere (higgs import {book_path.name} -o NEW) "
                             f"and carry it over, or delete {out / edited} to re-import")
    summary = write_project(read_book(book_path), out, edited_hint=hint)  # writes the stamp too
    return Path(summary["project"]), summary


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _import_stamp(path: Path) -> dict[str, Any] | None:
    """The last import's record, or None when missing or not ours (then the import runs as it always did)."""
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(stamp, dict) and isinstance(stamp.get("files"), dict) and isinstance(stamp.get("summary"), dict)
    return stamp if ok and all(isinstance(k, str) and ".." not in Path(k).parts for k in stamp["files"]) else None


def _file_state(path: Path, sha: str) -> str:
    if not path.is_file():
        return "missing"
    return "same" if _sha256(path) == sha else "edited"
