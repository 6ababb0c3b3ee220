"""EPUB books (2 and 3) -> Book: ebooklib reads the spine, TOC titles, metadata and cover; BeautifulSoup reads each document.

A spine document starts a part, titled by the first TOC entry that points into it; further TOC entries inside one
document split it at their anchors. Footnote markers and bodies, page numbers and images are dropped; paragraphs kept.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .books import WORD, Book, Part
from .errors import UsageError

_BLOCKS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "dt", "dd", "td", "th", "div", "section",
           "article", "figcaption", "caption", "address", "header", "footer", "aside", "tr", "table", "ul", "ol", "dl",
           "figure", "main", "nav", "center", "body", "poem", "stanza"}
_DROP = {"script", "style", "head", "img", "svg", "math", "object", "video", "audio", "iframe", "title"}
EPUB_MAX_UNPACKED = 1 << 30  # ebooklib holds every member in memory; illustrated books are tens of MB


def read_epub(path: Path) -> Book:
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
        if not text or not WORD.search(text):
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
    book.source_words += len(WORD.findall(" ".join(t for t in body.find_all(string=True) if t.parent.name not in _DROP)))
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
    if part.paragraphs and WORD.findall(part.paragraphs[0].lower()) == WORD.findall(part.title.lower()):
        part.paragraphs.pop(0)
