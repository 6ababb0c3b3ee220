"""Books in: a book file -> Book (parts with titles and kinds) -> one transcript per chapter plus a `book.yaml` that
`higgs build` takes as it is.

The readers are epub.py (EPUB 2 and 3) and textbooks.py (Markdown and plain text). This module holds what they
produce, sorts front matter (title page, contents, short parts before the first real chapter) and back matter
(licences such as Project Gutenberg's, colophons) from chapters (written too, but marked `skip: true`, so they are not
narrated unless the user says so), and writes the project, reusing an earlier import while the book is unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .options import WORDS_PER_MINUTE

BOOK_SUFFIXES = (".epub", ".md", ".markdown", ".txt")
_FRONT_TITLES = re.compile(r"^\s*(contents|table of contents|title\s*page|copyright.*|cover|half\s*title|imprint|"
                           r"list of illustrations|illustrations|also by .*|(original )?transcriber.s notes?:?|a note on the text)\s*$", re.I)
_BACK_TITLES = re.compile(r"licen[cs]e|colophon|about this (e-?)?book|project gutenberg|imprint|endnotes?$|copyright", re.I)
_LICENCE_TEXT = re.compile(r"\*\*\*\s*(START|END) OF (THE|THIS) PROJECT GUTENBERG|Project Gutenberg(™|-tm)? License", re.I)
_CHAPTERISH = re.compile(r"^\s*(chapter|book|part|volume|canto|act|prologue|epilogue|preface|foreword|introduction|"
                         r"[IVXLC]+\b|\d+\b)", re.I)
WORD = re.compile(r"\w+")
FRONT_MAXWORDS = 120  # a short part before the first real chapter (dedication, edition line) is front matter


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
        return sum(len(WORD.findall(p)) for p in self.paragraphs)


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
        from .epub import read_epub

        book = read_epub(path)
    elif suffix in (".md", ".markdown", ".txt"):
        from .transcript import decode_transcript

        text = decode_transcript(path.read_bytes(), str(path))
        from .textbooks import read_markdown, read_plain

        book = read_markdown(path, text) if suffix != ".txt" else read_plain(path, text)
    else:
        raise UsageError(f"{path}: not a book format higgs imports; give an .epub, .md or .txt file")
    _classify(book)
    if not any(p.kind == "chapter" and p.words for p in book.parts):
        raise UsageError(f"{path}: no chapter text found; is the book empty or image-only?")
    return book


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
        elif first_real is None and (part.words >= FRONT_MAXWORDS or _CHAPTERISH.match(part.title)):
            first_real = i
    for i, part in enumerate(book.parts if book.kind == "epub" else []):
        if part.kind == "chapter" and first_real is not None and i < first_real and part.words < FRONT_MAXWORDS:
            part.kind = "front"
        if part.kind == "chapter" and book.title and _same_words(part.title, book.title) and part.words < FRONT_MAXWORDS:
            part.kind = "front"  # the title page
    if not book.source_words:
        book.source_words = book.words


def _same_words(a: str, b: str) -> bool:
    return WORD.findall(a.lower()) == WORD.findall(b.lower())


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
    written = sum(len(WORD.findall(transcript_text(p))) for p in book.parts)
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
