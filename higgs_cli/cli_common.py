"""What every command shares: the consoles, exit codes for errors and signals, option types, the cache and progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .errors import HiggsError, Terminated, UsageError
from .options import EMOTIONS

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

# --- shared options -------------------------------------------------------------------------------
_PANEL = "Higgs engine"


def _higgs(*names: str, help: str) -> Any:
    """An option of the higgs engine: grouped in --help, no default shown (the engine's applies)."""
    return typer.Option(*names, help=help, rich_help_panel=_PANEL, show_default=False)


Transcript = Annotated[Path | None, typer.Option("--transcript", "-t", help="Transcript file ('-' reads stdin).", show_default=False)]
Text = Annotated[str | None, typer.Option("--text", help="Text to speak instead of a transcript file.", show_default=False)]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Output audio file (wav, flac, ogg, opus, mp3: by extension); '-' streams to stdout.", show_default=False)]
EngineOpt = Annotated[str, typer.Option("--engine", "-e", help="auto, higgs, piper or espeak.")]
Seed = Annotated[int, typer.Option(help="Base seed; every chunk gets its own derived, recorded seed.")]
MaxWords = Annotated[int, typer.Option("--max-words", min=1, help="Word budget per chunk.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Plan only: show chunks and voices, synthesise nothing.")]
Json = Annotated[bool, typer.Option("--json", help="Print the manifest as JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
CacheDir = Annotated[Path | None, typer.Option("--cache", help="Chunk cache folder (default: ~/.cache/higgs/chunks).", show_default=False)]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the chunk cache.")]
Jobs = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes for independent chunks (CPU engines).")]
_FIN = "Finishing"


def _fin(*names: str, help: str, **kw: Any) -> Any:
    """An option of the finishing pass (music bed, loudness, subtitles, stems, metadata)."""
    return typer.Option(*names, help=help, rich_help_panel=_FIN, **kw)


Music = Annotated[Path | None, _fin("--music", help="Music bed under the speech (any audio file), ducked under speech.", show_default=False)]
MusicGain = Annotated[float, _fin("--music-gain", help="Bed level in dB relative to the file.")]
MusicIntro = Annotated[float, _fin("--music-intro", help="Seconds of music alone before the speech.")]
MusicOutro = Annotated[float, _fin("--music-outro", help="Seconds of music alone after the speech.")]
Duck = Annotated[float, _fin("--duck", help="How many dB the bed drops under speech (0: no ducking).")]
Loudness = Annotated[str | None, _fin("--loudness", help="speech (-18 LUFS, the default), podcast (-16 LUFS), audiobook (ACX), broadcast (-23 LUFS), "
                                     "a LUFS number, or off (level as rendered). True peaks stay <= -1 dBTP either way.", show_default=False)]
Subtitles = Annotated[Path | None, _fin("--subtitles", help="Also write subtitles (.srt or .vtt) from chunk timings.", show_default=False)]
Stems = Annotated[Path | None, _fin("--stems", help="Also write one aligned track per speaker, plus the music bed, into DIR.", show_default=False)]
Title = Annotated[str | None, _fin("--title", help="Title metadata (m4a/m4b).", show_default=False)]
Author = Annotated[str | None, _fin("--author", help="Author metadata (m4a/m4b).", show_default=False)]
Cover = Annotated[Path | None, _fin("--cover", help="Cover image (m4a/m4b).", show_default=False)]
MaxSilence = Annotated[float | None, _fin("--max-silence", help="Shorten pauses inside generated speech to at most this many seconds.", show_default=False)]
Model = Annotated[str | None, _higgs(help="higgs: model hub id or local dir.")]
Codec = Annotated[str | None, _higgs(help="higgs: audio tokenizer hub id or local dir.")]
Revision = Annotated[str | None, _higgs(help="higgs: model revision (branch, tag or commit).")]
Device = Annotated[str, typer.Option(help="higgs: auto, cuda, cuda:N or cpu.", rich_help_panel=_PANEL)]
Temperature = Annotated[float | None, _higgs(help="higgs: sampling temperature 0..1.5.")]
TopK = Annotated[int | None, _higgs("--top-k", help="higgs: top-k -1..100 (-1 disables).")]
TopP = Annotated[float | None, _higgs("--top-p", help="higgs: top-p 0.1..1.")]
RasWindow = Annotated[int | None, _higgs("--ras-window", help="higgs: repetition-aware sampling window (0 disables; use 0 for music/humming).")]
RasRepeat = Annotated[int | None, _higgs("--ras-max-repeat", help="higgs: repeats allowed inside the RAS window.")]
MaxNew = Annotated[int | None, _higgs("--max-new-tokens", help="higgs: max audio frames per chunk (25 per second).")]
ContextChunks = Annotated[int | None, _higgs("--context-chunks", help="higgs: earlier chunks kept as audio context.")]
Scene = Annotated[str | None, _higgs(help="higgs: scene description, as text or a file path (default: upstream's quiet room; 'none' turns it off).")]
RefInSystem = Annotated[bool, typer.Option("--ref-in-system", help="higgs: put reference clips in the system message.", rich_help_panel=_PANEL)]
Emotion = Annotated[str | None, _higgs(help=f"higgs: {', '.join(EMOTIONS)}.")]
Speed = Annotated[float | None, _higgs(help="higgs: speaking-rate hint (0.5..2).")]
Decoder = Annotated[str | None, _higgs("--decoder", help="higgs: plain (transformers generate) or fast (static KV cache + CUDA graphs).")]
Batch = Annotated[int | None, _higgs("--batch", help="higgs: chains generated together on the GPU (same audio for any width; memory grows with it).")]
ChainWords = Annotated[int | None, _higgs("--chain-words", help="higgs: also start a new chain (context reset) at the first paragraph after N words; 0 = chapters only.")]
AudioFormat = Annotated[str | None, typer.Option("--audio-format", help="With -o -: wav (streaming header; default), pcm (s16le 24 kHz), flac, mp3, opus, aac.",
                                                   show_default=False)]
ContextLimit = Annotated[int | None, _higgs("--context-limit", help="higgs: positions a prompt plus its new audio may take (default 8192); older context goes past it.")]


def _interrupted(e: BaseException | None) -> KeyboardInterrupt | None:
    seen = 0
    while e is not None and seen < 20:
        if isinstance(e, KeyboardInterrupt):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def _stop(e: KeyboardInterrupt) -> typer.Exit:
    """Ctrl-C exits 130, SIGTERM 143 and SIGHUP 129 (128 + the signal), after the unwinding removed every temp file."""
    if isinstance(e, Terminated):
        import signal

        err.print(f"stopped by {signal.Signals(e.signum).name}; no output was written")
        return typer.Exit(128 + e.signum)
    err.print("interrupted; no output was written")
    return typer.Exit(130)


def _on_signal(signum: int, frame: Any) -> None:
    import signal

    for name in _TERMINATING:  # a second signal ends the process at once (the next run sweeps its temp files)
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    raise Terminated(signum)


_TERMINATING = ("SIGTERM", "SIGHUP")


def _install_signals() -> dict[Any, Any]:
    """SIGTERM and SIGHUP unwind like Ctrl-C; returns the handlers to restore (none off the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for name in _TERMINATING:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, _on_signal)
    return previous


def reported(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one stderr line and an exit code; Ctrl-C into exit 130, SIGTERM into 143."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import signal

        previous = _install_signals()
        try:
            return fn(*args, **kwargs)
        except HiggsError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)  # a message's [brackets] are text
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:
            raise _stop(e) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:  # a bug, not a user mistake: still one line unless debugging
            stopped = _interrupted(e)
            if stopped is not None:  # Ctrl-C inside an import or a C extension arrives wrapped
                raise _stop(stopped) from None
            if os.environ.get("HIGGS_DEBUG"):
                raise
            err.print(f"[bold red]internal error:[/] {e.__class__.__name__}: {escape(str(e))} (set HIGGS_DEBUG=1 for the traceback)", soft_wrap=True)
            raise typer.Exit(1) from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper

def progress_bar(quiet: bool):
    """A Rich progress bar on stderr (chunks done/total, elapsed, ETA), or nothing when quiet."""
    if quiet:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False)
    return bar, bar.add_task("rendering", total=None)


def chunk_cache(cache_dir: Path | None, no_cache: bool, create: bool = True):
    """The chunk cache; a default location that cannot be used is skipped with a warning, an explicit --cache refused."""
    from .cache import ChunkCache, cache_problem, default_cache_dir

    if no_cache:
        return ChunkCache(None)
    root = cache_dir or default_cache_dir()
    problem = cache_problem(root) if create else None
    if problem and cache_dir is not None:
        raise UsageError(f"--cache {root}: {problem}; give a writable folder or --no-cache")
    if problem:
        warn([f"chunk cache {root} {problem}; rendering without the cache (set HIGGS_CACHE_DIR to a writable folder, "
               "or pass --cache DIR or --no-cache)"], False)
        return ChunkCache(None)
    return ChunkCache(root)


def cap_jobs(jobs: int, quiet: bool) -> int:
    """--jobs above the usable core count only makes workers fight over the cores (and costs memory): capped, with a warning."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if jobs <= cores:
        return jobs
    warn([f"--jobs {jobs} is more than the {cores} CPU cores here; using {cores} workers"], quiet)
    return cores


def warn(lines: list[str], quiet: bool) -> None:
    """Warnings go to stderr (the manifest also lists them); --quiet keeps them out."""
    for line in [] if quiet else lines:
        err.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
