"""`higgs check` and the quality gate's options (--qa, --retakes, --qa-model, --retake-chunks) shared by the render commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import QualityError, UsageError
from .options import QA_MAX_RETAKES, QA_MODES, QaOptions

_PANEL = "Quality gate"
RETAKE_MAX_INDEX = 1_000_000  # far past any job (a 10-hour book is a few thousand chunks); a range past it would fill memory


QaMode = Annotated[str, typer.Option("--qa", rich_help_panel=_PANEL,
                                     help="Hear every chunk back with Whisper: off, report, retake, strict (exit 3 if any still fails), "
                                          "or auto (the engine's default: retake for higgs, off for the CPU engines).")]
Retakes = Annotated[int, typer.Option("--retakes", rich_help_panel=_PANEL, help="Extra takes of a failing chunk (retake/strict).")]
QaModel = Annotated[str | None, typer.Option("--qa-model", rich_help_panel=_PANEL, show_default=False,
                                             help="Whisper for the gate: hub id or local CTranslate2 dir (default: bundled tiny.en).")]
RetakeChunks = Annotated[str | None, typer.Option("--retake-chunks", rich_help_panel=_PANEL, show_default=False,
                                                  help="Re-render these chunks (e.g. 3,17) with a new take; the rest comes from the cache.")]


def qa_options(mode: str, retakes: int, model: str | None) -> QaOptions:
    mode = mode.strip().lower()
    if mode != "auto" and mode not in QA_MODES:
        raise UsageError(f"--qa {mode!r}: use one of auto, {', '.join(QA_MODES)}")
    if not 0 <= retakes <= QA_MAX_RETAKES:
        raise UsageError(f"--retakes must be between 0 and {QA_MAX_RETAKES}")
    return QaOptions(mode=mode, retakes=retakes, model=model)


def parse_chunks(value: str | None) -> frozenset[int]:
    """`3,17` or `3-5,17` -> chunk indices."""
    if not value:
        return frozenset()
    out: set[int] = set()
    for part in value.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise UsageError(f"--retake-chunks {value!r}: write chunk indices like 3,17 or 3-5 (see them with --dry-run)") from None
        if first < 0 or last < first:
            raise UsageError(f"--retake-chunks {part.strip()!r}: give indices from 0 upwards, low-high for a range")
        if last >= RETAKE_MAX_INDEX:
            raise UsageError(f"--retake-chunks {part.strip()!r}: no job has {last + 1} chunks; list this job's with --dry-run")
        out.update(range(first, last + 1))
    return frozenset(out)


def parse_chapter_chunks(values: list[str] | None) -> list[tuple[str, frozenset[int]]]:
    """`higgs build --retake-chunks 2:3,17 --retake-chunks 01-intro:0-2` -> [(chapter, chunks), ...]."""
    out = []
    for value in values or []:
        chapter, sep, chunks = value.rpartition(":")
        if not sep or not chapter.strip() or not chunks.strip():
            raise UsageError(f"--retake-chunks {value!r}: on build, name the chapter: CHAPTER:CHUNKS, e.g. 2:3,17 or 02-the-cafe:3,17 "
                             "(the chapter's number or file; repeat the option for more chapters)")
        out.append((chapter.strip(), parse_chunks(chunks)))
    return out


def flagged_lines(doc: dict[str, Any]) -> list[str]:
    """One line per chunk that failed the gate: index, transcript line, reasons."""
    lines = []
    for row in doc.get("chunks", []):
        qa = row.get("qa")
        if qa and not qa["passed"]:
            lines.append(f"chunk {row['index']} (line {row.get('line', '?')}, take {qa.get('take', 0)}): {'; '.join(qa['reasons'])}")
    return lines


def settle(doc: dict[str, Any], warn: Any, quiet: bool) -> None:
    """Report flagged chunks on stderr; in strict mode, exit 3 when any remain."""
    qa = doc.get("qa")
    if not qa or not qa["flagged"]:
        return
    if not quiet:
        for line in flagged_lines(doc):
            warn(f"[yellow]qa:[/] {line}")
    if qa["mode"] == "strict":
        raise QualityError(f"{qa['flagged']} chunk(s) failed the quality gate; re-render them with "
                           f"--retake-chunks {','.join(map(str, qa['flagged_chunks']))}, or raise --retakes")
    if not quiet:
        warn(f"[yellow]qa:[/] {qa['flagged']} chunk(s) flagged; re-render with --retake-chunks "
             f"{','.join(map(str, qa['flagged_chunks']))}")


def strict_build(summary: dict[str, Any]) -> None:
    """After `higgs build` in strict mode: exit 3 when a chapter rendered now still has flagged chunks."""
    bad = [(Path(c["output"]).name, c["qa"]["flagged_chunks"]) for c in summary.get("chapters", [])
           if (c.get("qa") or {}).get("mode") == "strict" and c["qa"]["flagged"]]
    if bad:
        where = "; ".join(f"{name}: chunks {', '.join(map(str, chunks))}" for name, chunks in bad)
        again = " ".join(f"--retake-chunks {Path(name).stem}:{','.join(map(str, chunks))}" for name, chunks in bad)
        raise QualityError(f"chunks failed the quality gate ({where}); see each chapter's .json, retake them ({again}), or raise --retakes")


def register(app: typer.Typer, out: Any, err: Any, reported: Any) -> None:
    @app.command("check")
    @reported
    def check_cmd(
        audio: Annotated[Path, typer.Argument(help="A rendered file.")],
        manifest: Annotated[Path, typer.Option("--manifest", "-m", help="Its manifest (what --json wrote, or a build's chapter .json).")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
        qa_model: QaModel = None,
    ) -> None:
        """Re-check a finished render chunk by chunk from its manifest: exit 0 when all pass, 3 when any is flagged."""
        from .check import check_render

        report = check_render(audio, manifest, qa_model)
        if as_json:
            print(json.dumps(report, ensure_ascii=False, indent=2))
        else:
            _table(report, out)
        if report["flagged"]:
            raise QualityError(f"{len(report['flagged'])} of {len(report['chunks'])} chunks flagged: "
                               f"{', '.join(str(f['index']) for f in report['flagged'])}")

    return None


def _table(report: dict[str, Any], out: Any) -> None:
    from rich.table import Table

    table = Table("#", "speaker", "wer", "verdict", "heard", show_edge=False)
    for row in report["chunks"]:
        wer = "" if row.get("wer") is None else f"{row['wer']:.2f}"
        verdict = "ok" if row["passed"] else "[red]" + "; ".join(row["reasons"]) + "[/]"
        table.add_row(str(row["index"]), row.get("speaker", ""), wer, verdict, (row.get("asr") or "")[:60])
    out.print(table)
