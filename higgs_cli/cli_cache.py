"""`higgs cache ...`: inspect and trim the chunk cache."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .cli_common import CacheDir, Json, chunk_cache, err, out, reported
from .errors import UsageError

cache_app = typer.Typer(help="Inspect and trim the chunk cache.", no_args_is_help=True)


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().removesuffix("b")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise UsageError(f"--max-size {text!r}: write a size like 500M or 2G") from None


@cache_app.command("info")
@reported
def cache_info(cache_dir: CacheDir = None, as_json: Json = False) -> None:
    """Show the cache's location, entries, size and age."""
    doc = chunk_cache(cache_dir, False, create=False).info()
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    age = f", oldest used {doc['oldest_days']} days ago" if doc["entries"] else ""
    out.print(f"{doc['path']}: {doc['entries']} chunks, {doc['bytes'] / 1e6:.1f} MB{age}")


@cache_app.command("prune")
@reported
def cache_prune(
    cache_dir: CacheDir = None,
    older_than: Annotated[float | None, typer.Option("--older-than", help="Remove chunks unused for this many days.")] = None,
    max_size: Annotated[str | None, typer.Option("--max-size", help="Then remove least recently used chunks beyond this size (e.g. 2G).")] = None,
) -> None:
    """Remove old or least recently used chunks."""
    if older_than is None and max_size is None:
        raise UsageError("say what to prune: --older-than DAYS and/or --max-size SIZE (or use `higgs cache clear`)")
    if older_than is not None and older_than < 0:
        raise UsageError("--older-than must be >= 0 days")
    removed, freed = chunk_cache(cache_dir, False, create=False).prune(older_than, _size(max_size) if max_size else None)
    err.print(f"removed {removed} chunks ({freed / 1e6:.1f} MB)")


@cache_app.command("clear")
@reported
def cache_clear(cache_dir: CacheDir = None) -> None:
    """Remove every cached chunk."""
    removed, freed = chunk_cache(cache_dir, False, create=False).clear()
    err.print(f"removed {removed} chunks ({freed / 1e6:.1f} MB)")
