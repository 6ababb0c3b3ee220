"""`higgs model ...`: prefetch, list, convert and check Higgs Audio v2 weights (a Typer sub-app; data on stdout, messages on stderr)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .cli_common import reported  # Ctrl-C/SIGTERM unwind (a convert removes its temp copy); no traceback for a mistake
from .errors import HiggsError
from .options import DEFAULT_CODEC, DEFAULT_CONTEXT_LIMIT, DEFAULT_MODEL

model_app = typer.Typer(help="Download, inspect and convert Higgs Audio v2 weights.", no_args_is_help=True)
_err = Console(stderr=True)


def _fail(e: HiggsError) -> typer.Exit:
    _err.print(f"[red]error:[/red] {e}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(e.exit_code)


@model_app.command()
@reported
def download(
    model: Annotated[str, typer.Option(help="LM hub id to fetch")] = DEFAULT_MODEL,
    codec: Annotated[str, typer.Option(help="Audio codec hub id to fetch")] = DEFAULT_CODEC,
    revision: Annotated[str | None, typer.Option(help="LM revision (commit, tag or branch)")] = None,
    codec_revision: Annotated[str | None, typer.Option(help="codec revision")] = None,
) -> None:
    """Prefetch the model and codec into the Hugging Face cache so renders work offline."""
    from . import model as weights

    _err.print(f"fetching {model} and {codec}: only the files the loaders read...")
    try:
        paths = weights.download(model, codec, revision, codec_revision, say=lambda line: _err.print(line, highlight=False))
    except HiggsError as e:
        raise _fail(e) from e
    for path in paths:
        typer.echo(str(path))


@model_app.command()
@reported
def info(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Show which Higgs Audio checkpoints are in the local caches."""
    from . import model as weights

    rows = weights.cache_info()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        _err.print("no Higgs Audio weights cached; run `higgs model download`")
        return
    out = Console()
    for row in rows:
        size = f"{row['size_bytes'] / 1e9:.2f} GB"
        refs = ",".join(row["refs"]) or "-"
        out.print(f"{row['id']}\t{row['revision'] or '-'}\t{refs}\t{size}\t{row['path']}", highlight=False, soft_wrap=True)


@model_app.command()
@reported
def convert(
    src: Annotated[Path, typer.Argument(help="directory with Boson's original checkpoint (LM or codec)")],
    dst: Annotated[Path, typer.Argument(help="directory to write the transformers-layout copy to")],
) -> None:
    """Convert an original Boson checkpoint (model_type higgs_audio, or a codec model.pth) once."""
    from . import model as weights

    _err.print(f"converting {src} -> {dst} ...")
    try:
        kind = weights.convert(src, dst)
    except HiggsError as e:
        raise _fail(e) from e
    _err.print(f"converted {kind}; use it with --{'model' if kind == 'lm' else 'codec'} {dst}")
    typer.echo(str(dst))


@model_app.command()
@reported
def check(
    model: Annotated[str, typer.Option(help="LM hub id or local dir")] = DEFAULT_MODEL,
    codec: Annotated[str, typer.Option(help="Audio codec hub id or local dir")] = DEFAULT_CODEC,
    device: Annotated[str, typer.Option(help="auto, cuda, cuda:N or cpu")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, bfloat16, float16 or float32")] = "auto",
    revision: Annotated[str | None, typer.Option(help="LM revision (commit, tag or branch)")] = None,
    codec_revision: Annotated[str | None, typer.Option(help="codec revision")] = None,
    context_limit: Annotated[int, typer.Option("--context-limit", help="positions per prompt (sizes the KV cache)")] = DEFAULT_CONTEXT_LIMIT,
    seconds: Annotated[float, typer.Option("--seconds", min=0.3, max=30.0, help="length of the test render")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Check a checkpoint pair (layout, config, special tokens, codebooks, dtype, memory), then render and decode ~2 s."""
    from dataclasses import replace

    from .engines.higgs import validate_settings
    from .model_check import check as run_check
    from .options import HiggsSettings

    settings = replace(HiggsSettings(), model=model, codec=codec, device=device, dtype=dtype, revision=revision,
                       codec_revision=codec_revision, context_limit=context_limit)
    try:
        validate_settings(settings)
        report = run_check(settings, say=None if as_json else lambda line: _err.print(line, highlight=False), seconds=seconds)
    except HiggsError as e:
        raise _fail(e) from e
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        out = Console(highlight=False, soft_wrap=True)
        for line in report.ok:
            out.print(f"ok: {line}")
        for line in report.problems:
            out.print(f"[red]problem:[/red] {line}")
        if report.timings:
            out.print("timings: " + ", ".join(f"{k} {v} s" for k, v in report.timings.items()))
        _err.print("all checks passed" if report.passed else f"{len(report.problems)} problem(s); fix them before rendering")
    if not report.passed:
        raise typer.Exit(1)
