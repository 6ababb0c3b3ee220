"""`higgs voices ...` and `higgs engines`: the voice library and which engines can run here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from .cli_common import Json, err, out, reported, warn

voices_app = typer.Typer(help="List, inspect, add and remove voices.", no_args_is_help=True)


@voices_app.command("list")
@reported
def voices_list(as_json: Json = False) -> None:
    """List bundled and user voices."""
    from rich.table import Table

    from .voices import library

    problems: list[str] = []
    rows = library(problems)
    warn(problems, False)
    if as_json:
        print(json.dumps([_voice_doc(v) for v in rows], indent=2, ensure_ascii=False))
        return
    table = Table("name", "source", "gender", "lang", "clip", "description", show_edge=False)
    for v in rows:
        table.add_row(v.name, v.source, v.gender or "", v.language, "yes" if v.clip else "no", v.description or "")
    out.print(table)


def _voice_doc(v) -> dict:
    return {"name": v.name, "source": v.source, "clip": str(v.clip) if v.clip else None, "transcript": v.transcript,
            "description": v.description, "gender": v.gender, "language": v.language, "engines": v.engines}


@voices_app.command("show")
@reported
def voices_show(name: Annotated[str, typer.Argument(help="Voice name or clip path.")], as_json: Json = False) -> None:
    """Show one voice: files, transcript and profile."""
    from .voices import resolve

    doc = _voice_doc(resolve(name))
    if doc["clip"]:
        from .audio import read_audio

        audio, rate = read_audio(Path(doc["clip"]))
        doc["seconds"], doc["sample_rate"] = round(len(audio) / rate, 2), rate
    if as_json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    for key, value in doc.items():
        if value not in (None, {}, ""):
            out.print(f"[bold]{key}[/]: {value}")


@voices_app.command("add")
@reported
def voices_add(
    name: Annotated[str, typer.Argument(help="New voice name (a-z, 0-9, - and _).")],
    audio: Annotated[Path, typer.Option("--audio", "-a", help="Clip of 3-30 s of clean speech.")],
    text: Annotated[str, typer.Option("--text", help="Exact words spoken in the clip (or a .txt path).")],
    description: Annotated[str | None, typer.Option(help="What the voice sounds like (used by the higgs engine).")] = None,
    gender: Annotated[str | None, typer.Option(help="feminine, masculine or neutral.")] = None,
    language: Annotated[str, typer.Option(help="Language code.")] = "en",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing user voice.")] = False,
) -> None:
    """Add a clip to your voice library (normalised to mono 24 kHz, silence trimmed)."""
    from .voices import add, clip_problems

    if len(text) < 4096 and text.endswith(".txt") and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8")
    voice = add(name, audio, text, description=description, gender=gender, language=language, force=force)
    warn(clip_problems(audio), False)
    err.print(f"added voice {voice.name!r} at {voice.clip}")


@voices_app.command("remove")
@reported
def voices_remove(name: Annotated[str, typer.Argument(help="User voice to delete.")]) -> None:
    """Delete a user voice (bundled voices cannot be removed)."""
    from .voices import remove

    removed = remove(name)
    err.print(f"removed voice {name!r} ({len(removed)} files)")


@reported
def engines_cmd(as_json: Json = False) -> None:
    """Show which engines can run here, and why not."""
    from rich.table import Table

    from . import engines

    rows = engines.status()
    auto, _ = engines.choose("auto")
    if as_json:
        doc = [{"name": n, "available": why is None, "reason": why, "summary": s, "auto": n == auto} for n, s, why in rows]
        print(json.dumps(doc, indent=2))
        return
    table = Table("engine", "available", "summary / why not", show_edge=False)
    for name, summary, why in rows:
        mark = "[green]yes[/]" + (" (auto)" if name == auto else "") if why is None else "[red]no[/]"
        table.add_row(name, mark, summary if why is None else f"{summary}\n[red]{escape(why)}[/]")
    out.print(table)
