"""Books, continued: bare-number chapter headings, rebuilding a book file without re-importing it, per-chapter voices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from higgs_cli.books import read_book
from higgs_cli.cli import app


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def chapters(path: Path) -> list[tuple[str, list[str]]]:
    return [(p.title, p.paragraphs) for p in read_book(path).parts if p.kind == "chapter"]


def test_bare_numbers_that_count_up_are_chapters_and_the_guess_is_said(tmp_path):
    book = tmp_path / "seasons.txt"
    book.write_text("The Seasons\n\n1\n\nIt began in spring. The rain came.\n\nMore of it.\n\n"
                    "2.\n\nThen summer, hot and long.\n\n3\nThe Last One\n\nAutumn ended it.\n", encoding="utf-8")
    assert chapters(book) == [("1", ["It began in spring. The rain came.", "More of it."]), ("2.", ["Then summer, hot and long."]),
                              ("3. The Last One", ["Autumn ended it."])]
    result = run("import", str(book), "-o", str(tmp_path / "proj"))
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "chapters guessed from 3 bare numbers on their own lines (1, 2., 3)" in said
    assert "title taken from the line before the first chapter: 'The Seasons'" in said
    assert sorted(p.name for p in (tmp_path / "proj" / "chapters").iterdir()) == ["01-1.txt", "02-2.txt", "03-3-the-last-one.txt"]


def test_roman_numerals_restarting_in_each_part_are_chapters_and_a_broken_run_is_not(tmp_path):
    good, odd = tmp_path / "parts.txt", tmp_path / "odd.txt"
    good.write_text("I\n\nOne morning he woke.\n\nII\n\nThe door opened.\n\nI\n\nA new part began.\n\nII\n\nAnd it ended.\n", encoding="utf-8")
    odd.write_text("II\n\nFirst part, first chapter.\n\nIII\n\nSecond chapter.\n", encoding="utf-8")  # does not start at I
    assert chapters(good) == [("I", ["One morning he woke."]), ("II", ["The door opened."]), ("I", ["A new part began."]), ("II", ["And it ended."])]
    assert chapters(odd) == [("odd. II", ["First part, first chapter.", "III", "Second chapter."])]  # no split, every word kept


@pytest.mark.parametrize(("text", "kept"), [
    ("It was a long\n\n1\n\nday and then\n\n2\n\nnight came at last. Then more.\n", "day and then"),  # page numbers break sentences
    ("He counted to three.\n\n3\n\nThen he stopped. The end came.\n", "Then he stopped. The end came."),  # a lone number
])
def test_page_numbers_and_a_lone_number_are_not_chapters(tmp_path, text, kept):
    path = tmp_path / "prose.txt"
    path.write_text(text, encoding="utf-8")
    book = read_book(path)
    parts = [p for p in book.parts if p.kind == "chapter"]
    assert len(parts) == 1 and kept in parts[0].paragraphs and not any(p.strip() in ("1", "2", "3") for p in parts[0].paragraphs)
    if "long" in text:  # numbers in order that break sentences: said why they are not chapters
        assert any("not read as chapters: at line 3 it breaks a sentence" in n for n in book.notes)


def _narrators(summary: dict) -> list[str]:
    """The NARRATOR voice each chapter was rendered with, from its manifest."""
    docs = [json.loads(Path(c["output"]).with_suffix(".json").read_text(encoding="utf-8")) for c in summary["chapters"]]
    return [doc["speakers"]["NARRATOR"]["voice"] for doc in docs]


def test_building_a_book_file_reuses_its_import_keeps_edits_and_honours_voice_hints(tmp_path):
    book = tmp_path / "seasons.txt"
    book.write_text("The Seasons\n\n<!-- voice: joe -->\n\n1\n\nSpring came.\n\n2\n\n<<VOICE:nell>>\n\nSummer was hot.\n", encoding="utf-8")
    first = run("build", str(book), "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert "imported 2 chapters" in first.stderr and [c["built"] for c in summary["chapters"]] == [True, True]
    assert _narrators(summary) == ["joe", "nell"]  # the book's hint, then chapter 2's own
    project = tmp_path / "seasons.higgs"
    assert "voice: \"nell\"" in (project / "book.yaml").read_text(encoding="utf-8")

    edited = project / "chapters" / "02-2.txt"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Summer was hot.", "Summer was very hot."), encoding="utf-8")
    again = run("build", str(book), "--json")  # the book is unchanged: its import is reused, the user's edit kept and built
    assert again.exit_code == 0, again.output
    said = " ".join(again.stderr.split())
    assert "book unchanged since its import: reusing 2 chapters" in said and "your edits kept: chapters/02-2.txt" in said
    assert [c["built"] for c in json.loads(again.stdout)["chapters"]] == [False, True]
    assert "Summer was very hot." in edited.read_text(encoding="utf-8")

    book.write_text(book.read_text(encoding="utf-8").replace("Spring came.", "Spring came early."), encoding="utf-8")
    changed = run("build", str(book))  # the book changed, and an imported file was edited: the edit is never overwritten
    assert changed.exit_code == 2 and "02-2.txt was edited after" in changed.stderr and "higgs import seasons.txt -o NEW" in changed.stderr
    assert "Summer was very hot." in edited.read_text(encoding="utf-8")
    edited.unlink()
    fresh = run("build", str(book), "--json")  # the user let it go: imported again, the changed chapter re-renders
    assert fresh.exit_code == 0, fresh.output
    assert "imported 2 chapters" in fresh.stderr and "Spring came early." in (project / "chapters" / "01-1.txt").read_text(encoding="utf-8")
    assert [c["built"] for c in json.loads(fresh.stdout)["chapters"]] == [True, True]


def test_unknown_voices_in_hints_or_book_yaml_stop_before_anything_renders(tmp_path):
    book = tmp_path / "tale.md"
    book.write_text("# One\n\n<!-- voice: zed -->\n\nHello.\n\n# Two\n\nBye.\n", encoding="utf-8")
    result = run("build", str(book))
    assert result.exit_code == 2 and f"{book}:3: voice hint: unknown voice 'zed'" in " ".join(result.stderr.split())
    assert not (tmp_path / "tale.higgs").exists()
    (tmp_path / "ch.txt").write_text("Hello.\n", encoding="utf-8")
    (tmp_path / "book.yaml").write_text("engine: espeak\nchapters:\n  - {file: ch.txt, voice: zed}\n", encoding="utf-8")
    result = run("build", str(tmp_path / "book.yaml"))
    assert result.exit_code == 2 and "chapter 'ch.txt': unknown voice 'zed'" in result.stderr and not (tmp_path / "build").exists()


def test_voice_hint_forms_and_where_they_apply(tmp_path):
    book = tmp_path / "tale.md"
    book.write_text("---\ntitle: Hints\n---\n# The Sea {#sea voice=nell}\n\nGrey.\n\n# The Hill\n\n<<VOICE:mae>>\n\nGreen.\n\n<!-- voice: ava -->\n\n"
                    "# The End\n\nDone.\n", encoding="utf-8")
    parsed = read_book(book)
    assert [(p.title, p.voice, p.voice_line) for p in parsed.parts] == [("The Sea", "nell", 4), ("The Hill", "mae", 10), ("The End", None, None)]
    assert any("line 14: a second voice hint (ava) in one chapter; the chapter keeps mae (line 10)" in n for n in parsed.notes)
    assert "line 10: voice hint: mae narrates 'The Hill'" in parsed.notes  # said at import
    plain = run("generate", "--text", "<<VOICE:mae>>\nHello.", "--dry-run", "--json", "--engine", "espeak")
    doc = json.loads(plain.stdout)  # outside a book the hint is never read out, and says how to choose a voice here
    assert [c["text"] for c in doc["chunks"]] == ["Hello."] and "--voice" in " ".join(n["message"] for n in doc["input"]["notes"])
