"""`higgs build`, `higgs bind` and `higgs inspect`: whole books from a project file, chapter files into one book, a render summarised."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from .cli_check import QaModel, parse_chapter_chunks, qa_options
from .cli_common import CacheDir, Jobs, Json, NoCache, Quiet, cap_jobs, chunk_cache, err, out, reported
from .cli_ray import RayAddress, cluster_bar, ray_settings
from .errors import UsageError

_BUILD_LINES: dict[str, Callable[[str, dict], str]] = {  # what `higgs build` says on stderr, per event kind
    "skip": lambda name, d: f"{name}: up to date",
    "book-skip": lambda name, d: f"{name}: up to date",
    "start": lambda name, d: f"{name}: rendering {d['chunks']} chunks",
    "done": lambda name, d: f"{name}: {d['duration']:.1f} s ({d['rendered']} chunks rendered{_flagged(d)})",
    "batch": lambda name, d: f"{name}: {d['chunks']} chunks, {d['width']} chains at a time",
    "batch-progress": lambda name, d: f"batch: {d['done']}/{d['total']} chunks rendered",
    "bind": lambda name, d: f"binding {name}",
    "warnings": lambda name, d: escape(f"{name}:{d['line'] or ''} warning: {d['first']}")
    + (f" (and {d['count'] - 1} more; see the chapter's .json)" if d["count"] > 1 else ""),
}


def _flagged(detail: dict) -> str:
    return f"; qa flagged {detail['flagged']}: see the chapter's .json" if detail.get("flagged") else ""


@reported
def build_cmd(
    project: Annotated[Path, typer.Argument(help="Project file (book.yaml or book.toml), or a book (.epub, .md, .txt) to import and build.")],
    jobs: Jobs = 1, cache_dir: CacheDir = None, no_cache: NoCache = False,
    force: Annotated[bool, typer.Option("--force", help="Rebuild every chapter and the book.")] = False,
    as_json: Json = False, quiet: Quiet = False,
    qa: Annotated[str | None, typer.Option("--qa", rich_help_panel="Quality gate", show_default=False,
                                           help="off, report, retake, strict or auto; overrides the project's `qa:`.")] = None,
    retakes: Annotated[int | None, typer.Option("--retakes", rich_help_panel="Quality gate", show_default=False,
                                                help="Extra takes of a failing chunk; overrides the project's.")] = None,
    qa_model: QaModel = None, ray: RayAddress = None,
    retake_chunks: Annotated[list[str] | None, typer.Option("--retake-chunks", rich_help_panel="Quality gate", show_default=False,
                                                            help="CHAPTER:CHUNKS, e.g. 2:3,17 or 02-the-cafe:3,17 (repeatable): re-render "
                                                                 "those chunks with a new take, then that chapter and the book.")] = None,
) -> None:
    """Build a book: render out-of-date chapters, then bind them; unchanged parts are skipped."""
    from . import engines
    from .build import BuildEvent, build, chapter_retakes, load_project

    if project.suffix.lower() in (".epub", ".md", ".markdown", ".txt"):  # a book itself: import it first (one narrator)
        from .books import project_for

        project, imported = project_for(project)
        if not quiet:
            edited = f"; your edits kept: {', '.join(imported['edited'])}" if imported.get("edited") else ""
            done = "book unchanged since its import: reusing" if imported.get("reused") else "imported"
            err.print(f"{done} {len(imported['chapters'])} chapters in {project} ({len(imported['skipped'])} parts skipped{edited})", soft_wrap=True)
    asked = parse_chapter_chunks(retake_chunks)
    spec = load_project(project)
    retake = chapter_retakes(spec, asked)
    if qa is not None or retakes is not None or qa_model is not None:
        given = spec.options.qa
        spec = replace(spec, options=replace(spec.options, qa=qa_options(qa or given.mode, given.retakes if retakes is None else retakes,
                                                                         qa_model or given.model)))
    engine, note = engines.choose(spec.options.engine, spec.options.higgs)
    if note and not quiet:
        err.print(f"[dim]{escape(note)}[/]", soft_wrap=True)

    on_ray = ray_settings(ray, spec.ray)
    update, stop = cluster_bar(err, quiet)

    def report(event: BuildEvent) -> None:
        if event.kind == "ray-progress":
            update(event.detail["progress"])
            return
        stop()  # a line after the cluster's bar
        line = _BUILD_LINES.get(event.kind)
        if line and not quiet:
            err.print("  " + line(event.name, event.detail))

    try:
        summary = build(spec, engine, chunk_cache(cache_dir, no_cache), cap_jobs(jobs, quiet), force, report, ray=on_ray, retake=retake)
    finally:
        stop()
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    from .cli_check import strict_build

    strict_build(summary)


@reported
def bind_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Chapter audio files, in order.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The book: .m4b/.m4a (AAC with chapters, needs ffmpeg) or wav/flac/ogg/opus/mp3.")],
    title: Annotated[str | None, typer.Option(help="Book title (metadata).")] = None,
    author: Annotated[str | None, typer.Option(help="Author (metadata).")] = None,
    cover: Annotated[Path | None, typer.Option(help="Cover image (m4b/m4a).")] = None,
    chapter_title: Annotated[list[str] | None, typer.Option("--chapter-title", help="Chapter titles in order (default: file names).")] = None,
    gap: Annotated[float, typer.Option(help="Seconds of silence between chapters (wav/flac/ogg/opus/mp3).")] = 2.0,
    as_json: Json = False, quiet: Quiet = False,
) -> None:
    """Join chapter files into one book, with chapter markers and metadata for m4b."""
    missing = [p for p in inputs if not p.is_file()]
    if missing:
        raise UsageError(f"{missing[0]}: chapter file not found; check the path")
    titles = list(chapter_title or [p.stem for p in inputs])
    if len(titles) != len(inputs):
        raise UsageError(f"{len(titles)} --chapter-title values for {len(inputs)} files; give one per file or none")
    if gap < 0 or gap > 60:
        raise UsageError("--gap must be between 0 and 60 seconds")
    from .build import bind_book

    doc = bind_book(inputs, out_path, gap, titles, title, author, cover)
    if as_json:
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    elif not quiet:
        err.print(f"wrote {out_path} ({len(inputs)} chapters)")


@reported
def inspect_cmd(
    audio: Annotated[Path, typer.Argument(help="An audio file (any format higgs writes).")],
    manifest: Annotated[Path | None, typer.Option(help="Its manifest (default: same name with .json, if present).", show_default=False)] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Draw a timeline: waveform, speaker lanes, music gain, chunk boundaries.", show_default=False)] = None,
    as_json: Json = False,
) -> None:
    """Summarise a rendered file: duration, loudness, true peak, speakers' talk time, music level."""
    from rich.markup import escape

    from .inspection import inspect

    doc = inspect(audio, png, manifest)
    if as_json:
        print(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    for key, value in doc.items():
        if key == "flagged":
            value = f"{len(value)} chunk(s)" + "".join(f"\n  #{c['index']} (line {c['line']}, {c['start']}-{c['end']} s): "
                                                      f"{'; '.join(c['reasons'])}\n    text:  {c['text']}\n    heard: {c['heard']}" for c in value)
            value = escape(value)  # the text may hold [tags]
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        out.print(f"[bold]{key}[/]: {value}", soft_wrap=True)
