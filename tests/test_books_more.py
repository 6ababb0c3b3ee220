"""Books, continued: bare-number chapter headings, rebuilding a book file without re-importing it, per-chapter voices."""

from __future__ import annotations

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
