"""Books in: a Project Gutenberg EPUB, a Markdown book and a plain-text book become projects `higgs build` takes (issue 12)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from higgs_cli.books import read_book
from higgs_cli.build import load_project
from higgs_cli.cli import app

INPUTS = Path(__file__).resolve().parent / "fixtures" / "inputs"
ALICE = INPUTS / "gutenberg_alice_11.epub"
TOC = ["CHAPTER I. Down the Rabbit-Hole", "CHAPTER II. The Pool of Tears", "CHAPTER III. A Caucus-Race and a Long Tale",
       "CHAPTER IV. The Rabbit Sends in a Little Bill", "CHAPTER V. Advice from a Caterpillar", "CHAPTER VI. Pig and Pepper",
       "CHAPTER VII. A Mad Tea-Party", "CHAPTER VIII. The Queen’s Croquet-Ground", "CHAPTER IX. The Mock Turtle’s Story",
       "CHAPTER X. The Lobster Quadrille", "CHAPTER XI. Who Stole the Tarts?", "CHAPTER XII. Alice’s Evidence"]


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_gutenberg_epub_imports_chapters_titles_metadata_and_words(tmp_path):
    out = tmp_path / "alice"
    result = run("import", str(ALICE), "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [c["title"] for c in summary["chapters"]] == TOC  # titles from the table of contents
    assert summary["written_words"] >= 0.98 * summary["source_words"] > 25_000
    assert "12 chapters" in result.stderr and "skipped" in result.stderr and "licence" in result.stderr
    assert "h " in result.stderr and "min of audio" in result.stderr
    project = load_project(out / "book.yaml")  # build takes it as it is
    assert project.title == "Alice's Adventures in Wonderland" and project.author == "Lewis Carroll"
    assert project.cover is not None and project.cover.read_bytes()[:2] == b"\xff\xd8"  # the EPUB's JPEG cover
    assert [c.title for c in project.chapters] == TOC  # licence and contents are marked skip: true
    text = (out / "book.yaml").read_text(encoding="utf-8")
    assert 'language: "en"' in text and text.count("skip: true") == len(summary["skipped"]) >= 2
    licence = [s for s in summary["skipped"] if s["kind"] == "licence"]
    assert sum(s["words"] for s in licence) > 2500  # the Project Gutenberg License: kept in a file, not narrated
    written = Counter(w.lower() for f in sorted((out / "chapters").glob("*.txt")) for w in re.findall(r"\w+", f.read_text(encoding="utf-8")))
    source = _epub_words(ALICE)
    assert sum(min(n, written[w]) for w, n in source.items()) >= 0.98 * sum(source.values())  # >= 98% of the book's words
    first = project.chapters[0].source.read_text(encoding="utf-8")
    assert first.startswith("# CHAPTER I. Down the Rabbit-Hole\n\nAlice was beginning to get very tired")
    narrated = " ".join(c.source.read_text(encoding="utf-8") for c in project.chapters)
    assert "Gutenberg" not in narrated


def _epub_words(path: Path) -> Counter:
    """Every word in the EPUB's XHTML bodies, read straight from the zip with lxml (independent of higgs)."""
    import zipfile

    from lxml import etree

    words: Counter = Counter()
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith(".xhtml") and not name.endswith(("toc.xhtml", "wrap0000.xhtml")):
                body = etree.fromstring(z.read(name)).find("{http://www.w3.org/1999/xhtml}body")
                words.update(w.lower() for w in re.findall(r"\w+", " ".join(body.itertext())))
    return words


def _tiny_epub(tmp_path: Path) -> Path:
    """Alice cut to its first two chapters of ten words each (and its licence): the spine loses the other
    documents and the two chapters lose their later paragraphs; everything else in the zip is copied as it is."""
    import zipfile

    from lxml import etree

    xhtml = "{http://www.w3.org/1999/xhtml}"
    path = tmp_path / "alice-tiny.epub"
    with zipfile.ZipFile(ALICE) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("content.opf"):
                for idref in ["pg-header"] + [f"item{i}" for i in range(6, 16)]:
                    data = data.replace(f'<itemref idref="{idref}"/>'.encode(), b"")
            elif info.filename.endswith(("-1.htm.xhtml", "-2.htm.xhtml")):
                root = etree.fromstring(data)
                for para in list(root.iter(f"{xhtml}p")):
                    if sum(1 for _ in para.itersiblings(f"{xhtml}p", preceding=True)) >= 1:
                        para.getparent().remove(para)
                    else:  # the first paragraph cut to its first ten words, so the build stays short
                        text = " ".join("".join(para.itertext()).split()[:10]) + "."
                        para.clear()
                        para.text = text
                data = etree.tostring(root, xml_declaration=True, encoding="utf-8")
            dst.writestr(info, data, compress_type=zipfile.ZIP_STORED if info.filename == "mimetype" else zipfile.ZIP_DEFLATED)
    return path


def test_epub_builds_directly_to_an_m4b_with_one_chapter_mark_per_chapter(tmp_path):
    from higgs_cli.containers import probe

    tiny = _tiny_epub(tmp_path)
    parsed = read_book(tiny)
    assert [p.title for p in parsed.parts if p.kind == "chapter"] == TOC[:2]
    result = run("build", str(tiny), "--json", "--no-cache")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "imported 2 chapters" in result.stderr
    book = Path(summary["book"]["output"])
    assert book.suffix == ".m4b" and book.is_file()
    info = probe(book)
    assert [c["title"] for c in info["chapters"]] == TOC[:2]
    assert info["tags"].get("title") == "Alice's Adventures in Wonderland" and info["cover"]
    again = run("build", str(tiny), "--json", "--no-cache")  # nothing changed: nothing re-renders
    assert again.exit_code == 0 and not any(c["built"] for c in json.loads(again.stdout)["chapters"])


def _variant(tmp_path: Path, name: str, edit) -> Path:
    """A copy of the Alice EPUB with `edit(filename, data) -> data | None` applied to each member (None drops it)."""
    import zipfile

    path = tmp_path / name
    with zipfile.ZipFile(ALICE) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = edit(info.filename, src.read(info))
            if data is not None:
                dst.writestr(info, data, compress_type=zipfile.ZIP_STORED if info.filename == "mimetype" else zipfile.ZIP_DEFLATED)
    return path


def _epub2(name: str, data: bytes) -> bytes | None:
    """EPUB 2: OPF version 2.0, no EPUB 3 nav document, cover only through <meta name="cover">."""
    if name.endswith("toc.xhtml"):
        return None
    if name.endswith("content.opf"):
        data = data.replace(b'version="3.0"', b'version="2.0"').replace(b' properties="cover-image"', b"")
        return re.sub(rb'<item href="toc.xhtml"[^>]*/>', b"", data)
    return data


def _no_toc(name: str, data: bytes) -> bytes | None:
    data = _epub2(name, data)
    if name.endswith("toc.ncx"):
        data = re.sub(rb"<navMap>.*</navMap>", b"<navMap/>", data, flags=re.S)
    return data


def test_epub2_and_an_epub_without_a_toc(tmp_path):
    book = read_book(_variant(tmp_path, "alice2.epub", _epub2))
    assert [p.title for p in book.parts if p.kind == "chapter"] == TOC  # titles from the NCX
    assert book.cover is not None and book.cover[0][:2] == b"\xff\xd8" and book.author == "Lewis Carroll"
    bare = read_book(_variant(tmp_path, "bare.epub", _no_toc))
    assert [p.title for p in bare.parts if p.kind == "chapter"] == TOC  # from each chapter's own heading
    assert bare.words >= 0.98 * bare.source_words


def test_drm_epub_is_refused(tmp_path):
    import zipfile

    encryption = (b'<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><EncryptedData>'
                  b'<CipherData><CipherReference URI="OEBPS/3024803926727201407_11-h-1.htm.xhtml"/></CipherData>'
                  b"</EncryptedData></encryption>")
    path = _variant(tmp_path, "locked.epub", lambda name, data: data)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("META-INF/encryption.xml", encryption)
    result = run("import", str(path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "encrypted (DRM)" in result.stderr and not (tmp_path / "out").exists()


def test_markdown_book_chapters_from_headings(tmp_path):
    out = tmp_path / "md"
    result = run("import", str(INPUTS / "vibevoice_book_chapter.md"), "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [c["title"] for c in summary["chapters"]] == ["Chapter 1: Arrival", "Chapter 2: Discovery"]
    source = (INPUTS / "vibevoice_book_chapter.md").read_text()
    written = " ".join((out / c["file"]).read_text() for c in summary["chapters"])
    assert re.findall(r"\w+", written) == re.findall(r"\w+", source)  # every word, scenes read as paragraphs


def test_plain_text_book_drops_page_numbers_running_heads_and_gutenberg_boilerplate(tmp_path):
    text = ("The Project Gutenberg eBook of A Short Tale\n\nTitle: A Short Tale\n\nAuthor: Ann Writer\n\nLanguage: English\n\n"
            "*** START OF THE PROJECT GUTENBERG EBOOK A SHORT TALE ***\n\n"
            "CHAPTER I.\nThe Door\n\nIt was a dark door.[1] Nobody opened it.\n\n12\n\nA SHORT TALE\n\nThen somebody did.\n\n"
            "A SHORT TALE\n\nCHAPTER II.\nThe Room\n\nThe room was empty [Pg 13] and cold.\n\nA SHORT TALE\n\nThe end.\n\n"
            "*** END OF THE PROJECT GUTENBERG EBOOK A SHORT TALE ***\n\nSection 1. General Terms of Use and Redistributing.\n")
    path = tmp_path / "tale.txt"
    path.write_text(text)
    book = read_book(path)
    assert (book.title, book.author, book.language) == ("A Short Tale", "Ann Writer", "en")
    chapters = [p for p in book.parts if p.kind == "chapter"]
    assert [(p.title, p.paragraphs) for p in chapters] == [
        ("CHAPTER I. The Door", ["It was a dark door. Nobody opened it.", "Then somebody did."]),
        ("CHAPTER II. The Room", ["The room was empty and cold.", "The end."]),
    ]
    assert [p.kind for p in book.parts if p.kind != "chapter"] == ["licence", "licence"]


@pytest.mark.parametrize(("name", "fragment"), [("book.pdf", "not a book format"), ("missing.epub", "not found")])
def test_bad_books_are_one_line_errors(tmp_path, name, fragment):
    path = tmp_path / name
    if name.endswith(".pdf"):
        path.write_bytes(b"%PDF-1.4")
    result = run("import", str(path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and fragment in result.stderr and "Traceback" not in result.output


def test_import_voice_is_checked_and_written_for_the_narrator(tmp_path):
    bad = run("import", str(INPUTS / "vibevoice_book_chapter.md"), "-o", str(tmp_path / "a"), "--voice", "nobody")
    assert bad.exit_code == 2 and "unknown voice 'nobody'" in bad.stderr and not (tmp_path / "a").exists()
    good = run("import", str(INPUTS / "vibevoice_book_chapter.md"), "-o", str(tmp_path / "b"), "--voice", "ava", "-q")
    assert good.exit_code == 0 and load_project(tmp_path / "b" / "book.yaml").options.voices == {"NARRATOR": "ava"}


def test_import_never_overwrites_a_project_it_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "book.yaml").write_text("title: Mine\nchapters: [a.txt]\n")
    result = run("import", str(INPUTS / "vibevoice_book_chapter.md"), "-o", str(out))
    assert result.exit_code == 2 and "not written by `higgs import`" in result.stderr
    assert (out / "book.yaml").read_text() == "title: Mine\nchapters: [a.txt]\n"


def test_corrupt_epub_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.epub"
    path.write_bytes(ALICE.read_bytes()[:5000])
    result = run("import", str(path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "not a readable EPUB" in result.stderr


def test_build_says_what_a_chapter_could_not_honour(tmp_path):
    (tmp_path / "ch1.txt").write_text("Hello <emphasis>there</emphasis>.\n\nShalom שלום.\n")
    (tmp_path / "book.yaml").write_text("title: W\nengine: espeak\nchapters: [ch1.txt]\n")
    result = run("build", str(tmp_path / "book.yaml"), "--no-cache")
    assert result.exit_code == 0, result.output
    assert "ch1.txt:1 warning: SSML <emphasis>" in " ".join(result.stderr.split()) and "and 1 more" in result.stderr
    notes = json.loads((tmp_path / "build" / "ch1.json").read_text())["input"]["notes"]
    assert {(n["line"], n["kind"]) for n in notes} >= {(1, "warning"), (3, "warning")}


def test_import_output_must_be_a_folder_and_the_book_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run("import", str(INPUTS / "vibevoice_book_chapter.md"), "-o", str(tmp_path / "file"))
    assert result.exit_code == 2 and "is a file; give a folder" in result.stderr
    result = run("import", str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "is a folder; give the book file" in result.stderr
