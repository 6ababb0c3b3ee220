"""`higgs model ...`: prefetch, list and convert Higgs Audio v2 weights (a Typer sub-app; data on stdout, messages on stderr)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .errors import HiggsError
from .options import DEFAULT_CODEC, DEFAULT_MODEL

model_app = typer.Typer(help="Download, inspect and convert Higgs Audio v2 weights.", no_args_is_help=True)
_err = Console(stderr=True)


def _fail(e: HiggsError) -> typer.Exit:
    _err.print(f"[red]error:[/red] {e}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(e.exit_code)


@model_app.command()
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
