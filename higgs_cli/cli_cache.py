"""`higgs cache ...`: inspect and trim the chunk cache and, beside it, the quality gate's take records (takes.py)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .cli_common import CacheDir, Json, chunk_cache, err, out, reported
from .errors import UsageError

cache_app = typer.Typer(help="Inspect and trim the chunk cache (and its take records).", no_args_is_help=True)


def _records(cache: Any) -> Any:
    from .takes import TakeStore

    return TakeStore(cache.root if cache.enabled else None)


def _removed(chunks: int, freed: int, records: int, record_bytes: int) -> str:
    return f"removed {chunks} chunks ({freed / 1e6:.1f} MB) and {records} take records ({record_bytes / 1e3:.1f} kB)"


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
    """Show the cache's location, entries, size and age, and how many take records (kept takes, verdicts) it holds."""
    cache = chunk_cache(cache_dir, False, create=False)
    doc = cache.info()
    records = _records(cache).files()
    doc["take_records"], doc["take_record_bytes"] = len(records), sum(f.stat().st_size for f in records)
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    age = f", oldest used {doc['oldest_days']} days ago" if doc["entries"] else ""
    out.print(f"{doc['path']}: {doc['entries']} chunks, {doc['bytes'] / 1e6:.1f} MB{age}; {doc['take_records']} take records")


@cache_app.command("prune")
@reported
def cache_prune(
    cache_dir: CacheDir = None,
    older_than: Annotated[float | None, typer.Option("--older-than", help="Remove chunks, and kept-take records, unused for this many days.")] = None,
    max_size: Annotated[str | None, typer.Option("--max-size", help="Then remove least recently used chunks beyond this size (e.g. 2G).")] = None,
) -> None:
    """Remove old or least recently used chunks, and the take records about them.

    A take's verdicts go with its chunk; a chunk's kept take (chosen by the quality gate or by --retake-chunks)
    is a choice, not audio: it goes only with --older-than, once its job has not run for that long."""
    if older_than is None and max_size is None:
        raise UsageError("say what to prune: --older-than DAYS and/or --max-size SIZE (or use `higgs cache clear`)")
    if older_than is not None and older_than < 0:
        raise UsageError("--older-than must be >= 0 days")
    cache = chunk_cache(cache_dir, False, create=False)
    removed, freed = cache.prune(older_than, _size(max_size) if max_size else None)
    err.print(_removed(removed, freed, *_records(cache).prune(cache.has, older_than)))


@cache_app.command("clear")
@reported
def cache_clear(cache_dir: CacheDir = None) -> None:
    """Remove every cached chunk and every take record (kept takes, verdicts)."""
    cache = chunk_cache(cache_dir, False, create=False)
    removed, freed = cache.clear()
    err.print(_removed(removed, freed, *_records(cache).clear()))
