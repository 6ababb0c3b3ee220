"""Reading inputs people have, on the command line: the shared options (--format, --emoji, --numbers, --lexicon),
the per-line report on stderr, and `higgs import BOOK -o DIR` (registered in cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .options import SCRIPT_FORMATS, WORDS_PER_MINUTE

_PANEL = "Reading the input"
_err = Console(stderr=True, highlight=False)
NOTES_SHOWN = 20  # per-line notes printed on stderr; all of them are in --dry-run --json

Format = Annotated[str, typer.Option("--format", help=f"Script format: {', '.join(SCRIPT_FORMATS)} (auto detects it from the content).",
                                     rich_help_panel=_PANEL)]
Emoji = Annotated[str, typer.Option("--emoji", help="Emoji: remove, name (read the emoji's name) or keep.", rich_help_panel=_PANEL)]
Numbers = Annotated[str, typer.Option("--numbers", help="English numbers, dates, currencies: words (read out for the engine), "
                                      "keep (left to the engine) or auto (per engine).", rich_help_panel=_PANEL)]
LexiconOpt = Annotated[Path | None, typer.Option("--lexicon", help="Pronunciation lexicon (YAML or TSV): word -> respelling or /IPA/.",
                                                 rich_help_panel=_PANEL, show_default=False)]


def print_notes(notes: list[Any] | tuple[Any, ...], source: str | None, console: Console | None = None) -> None:
    """What reading the input converted, removed or guessed, one line each (the first NOTES_SHOWN)."""
    console = console or _err
    where = source or "<text>"
    for note in notes[:NOTES_SHOWN]:
        place = f"{where}:{note.line}" if note.line else where
        label = {"warning": "[yellow]warning:[/] ", "format": ""}.get(note.kind, f"{note.kind}: ")
        console.print(f"{escape(place)}: {label}{escape(note.message)}", soft_wrap=True)
    if len(notes) > NOTES_SHOWN:
        console.print(f"... and {len(notes) - NOTES_SHOWN} more notes (--dry-run --json lists every one)")


def import_cmd(
    book: Annotated[Path, typer.Argument(help="An EPUB (2 or 3), Markdown (.md) or plain-text (.txt) book.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Project folder to create: chapter transcripts + book.yaml.")],
    voice: Annotated[str | None, typer.Option("--voice", "-v", help="Narrator voice written into book.yaml.", show_default=False)] = None,
    engine: Annotated[str, typer.Option("--engine", "-e", help="Engine written into book.yaml.")] = "auto",
    include_all: Annotated[bool, typer.Option("--all", help="Also narrate front and back matter (licence, contents...).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a folder that already holds a book.yaml.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Turn a book into a project: one transcript per chapter, plus a book.yaml `higgs build` takes as it is."""
    from .books import read_book, write_project

    if voice:
        from .voices import resolve

        resolve(voice)  # an unknown voice fails now, not at the first chapter of the build
    parsed = read_book(book)
    summary = write_project(parsed, out_dir, voice=voice, engine=engine, include_all=include_all, force=force)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    if quiet:
        return
    minutes = summary["words"] / WORDS_PER_MINUTE
    length = f"{int(minutes // 60)} h {round(minutes % 60)} min" if minutes >= 60 else f"{max(1, round(minutes))} min"
    _err.print(f"{escape(parsed.title or book.stem)}"
               f"{' by ' + escape(parsed.author) if parsed.author else ''}: {len(summary['chapters'])} chapters, "
               f"{summary['words']} words, about {length} of audio (at {WORDS_PER_MINUTE} words a minute)", soft_wrap=True)
    for row in summary["skipped"]:
        _err.print(f"  skipped {escape(row['title'])!s} ({row['kind']}, {row['words']} words); --all narrates it", soft_wrap=True)
    for note in summary["notes"][:NOTES_SHOWN]:
        _err.print(f"  {escape(note)}", soft_wrap=True)
    _err.print(f"wrote {escape(str(Path(summary['project'])))}; next: higgs build {escape(summary['project'])}", soft_wrap=True)
