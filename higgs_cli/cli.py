"""The `higgs` command line: parse, validate, call one library function, report (the only module that prints)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .cli_check import QaMode, QaModel, RetakeChunks, Retakes, parse_chunks, qa_options
from .cli_import import Emoji, Format, LexiconOpt, Numbers, import_cmd
from .cli_model import model_app
from .cli_ray import RayAddress, cluster_bar, ray_settings, render_on_ray
from .cli_serve import serve_cmd
from .errors import EngineUnavailable, HiggsError, Terminated, UsageError
from .options import (
    CHUNK_METHODS,
    DEFAULT_CHUNK,
    DEFAULT_DIALOGUE_CHUNK,
    DEFAULT_LOUDNESS,
    DEFAULT_MAX_WORDS,
    DEFAULT_SEED,
    DUCK_DB,
    EMOTIONS,
    MUSIC_GAIN_DB,
    QA_RETAKES,
    FinishOptions,
    HiggsSettings,
    RenderOptions,
)

app = typer.Typer(
    help="Long-form and multi-speaker text-to-speech on Higgs Audio v2, with offline CPU engines.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True,
)
voices_app = typer.Typer(help="List, inspect, add and remove voices.", no_args_is_help=True)
app.add_typer(voices_app, name="voices")
app.add_typer(model_app, name="model")
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


def _version(value: bool) -> None:
    if value:
        out.print(f"higgs {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False) -> None:
    """higgs: turn transcripts into finished speech."""


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

        err.print(f"stopped by {signal.Signals(e.signum).name}; no output was written (finished chunks are cached)")
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


def _load_script(transcript: Path | None, text: str | None, fmt: str = "auto", emoji: str = "remove"):
    from .scripts import load, read
    from .textclean import reading
    from .transcript import decode_transcript

    if (transcript is None) == (text is None):
        raise UsageError("give exactly one of --transcript FILE or --text TEXT")
    clean = reading(fmt, emoji)
    if text is not None:
        return load(text, fmt, "--text", clean)
    if str(transcript) == "-":
        return load(decode_transcript(sys.stdin.buffer.read(), "<stdin>"), fmt, "<stdin>", clean)
    return read(transcript, fmt, clean)


def _parse_voices(values: list[str] | None) -> tuple[dict[str, str], str | None]:
    mapping: dict[str, str] = {}
    default = None
    for value in values or []:
        if not value.strip():
            raise UsageError("--voice is empty; give a voice NAME, a clip path or SPEAKER=NAME (see `higgs voices list`)")
        if "=" in value:
            speaker, _, name = value.partition("=")
            if not speaker.strip() or not name.strip():
                raise UsageError(f"--voice {value!r}: write SPEAKER=NAME, e.g. --voice SPEAKER0=ava")
            mapping[speaker.strip().upper()] = name.strip()
        elif default is None:
            default = value
        else:
            raise UsageError(f"--voice {value!r}: only one plain voice name is allowed; map the others as SPEAKER=NAME")
    return mapping, default


def _scene(value: str | None) -> str | None:
    if value and len(value) < 4096 and value.strip().lower() != "none" and Path(value).is_file():
        return Path(value).read_text(encoding="utf-8").strip()
    return value


def _higgs_settings(**given: Any) -> HiggsSettings:
    from .engines.higgs import validate_settings  # torch-free

    given["scene"] = _scene(given.get("scene"))
    settings = replace(HiggsSettings(), **{k: v for k, v in given.items() if v is not None and v is not False})
    validate_settings(settings)
    return settings


def _progress(quiet: bool):
    """A Rich progress bar on stderr (chunks done/total, elapsed, ETA), or nothing when quiet."""
    if quiet:
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False)
    return bar, bar.add_task("rendering", total=None)


def _cache(cache_dir: Path | None, no_cache: bool, create: bool = True):
    """The chunk cache; a default location that cannot be used is skipped with a warning, an explicit --cache refused."""
    from .cache import ChunkCache, cache_problem, default_cache_dir

    if no_cache:
        return ChunkCache(None)
    root = cache_dir or default_cache_dir()
    problem = cache_problem(root) if create else None
    if problem and cache_dir is not None:
        raise UsageError(f"--cache {root}: {problem}; give a writable folder or --no-cache")
    if problem:
        _warn([f"chunk cache {root} {problem}; rendering without the cache (set HIGGS_CACHE_DIR to a writable folder, "
               "or pass --cache DIR or --no-cache)"], False)
        return ChunkCache(None)
    return ChunkCache(root)


def _run_job(script, options: RenderOptions, output: Path | None, dry_run: bool, as_json: bool, quiet: bool,
             engine: str | None = None, voice: Any = None, cache: Any = None, jobs: int = 1,
             subtitles: Path | None = None, stems: Path | None = None, retake_chunks: frozenset[int] = frozenset(),
             ray: str | None = None, audio_format: str | None = None) -> None:
    """Plan, then print the plan (dry run) or render it; `voice` gives every speaker one voice."""
    from . import engines
    from .pipeline import chunk_keys, make_plan, manifest, render

    if output is None and not dry_run:
        raise UsageError("no output file; add -o OUT.wav (or --dry-run to only plan)")
    jobs = _cap_jobs(jobs, quiet)
    to_stdout = output is not None and str(output) == "-"
    if to_stdout or audio_format is not None:
        from .cli_serve import check_stdout_job

        check_stdout_job(options, to_stdout, audio_format, dry_run, as_json, subtitles, stems)
        if ray and to_stdout and not dry_run:
            raise UsageError("-o - streams chunks in order as they finish here; --ray renders them across a cluster: use one of them")
    if output is not None and not to_stdout:
        from .containers import check_output

        check_output(output)
    if subtitles is not None:
        from .subtitles import check_subtitle_path

        check_subtitle_path(subtitles)
    ray_spec = None if dry_run else ray_settings(ray)
    engine, note = (engine, None) if engine else engines.choose(options.engine, options.higgs)
    options = replace(options, engine=engine)
    plan = make_plan(script, options, engine)
    if voice is not None:
        plan = replace(plan, cast={spk: voice for spk in script.speakers})
    if output is not None:
        from .pipeline import check_job_files

        check_job_files(plan, output, subtitles, stems)
    if note and not quiet:
        err.print(f"[dim]{escape(note)}[/]", soft_wrap=True)
    if not quiet:
        from .cli_import import print_notes

        print_notes(script.notes + plan.notes, script.source, err)
    if dry_run:
        doc = manifest(plan, output, chunk_keys(plan), cache=cache)
        if as_json:
            print(json.dumps(doc, ensure_ascii=False, indent=2))
        elif not quiet:
            _print_plan(doc)
        return
    bar, task = _progress(quiet or ray_spec is not None)  # on Ray: one bar across the cluster instead
    if bar:
        bar.start()
        bar.update(task, total=len(plan.chunks))
    if to_stdout:
        from .cli_serve import stream_stdout

        try:
            seconds = stream_stdout(plan, audio_format or "wav", cache, jobs, (lambda p: bar.update(task, completed=p.done)) if bar else None)
        finally:
            if bar:
                bar.stop()
        if not quiet:
            err.print(f"streamed {seconds:.1f} s of {audio_format or 'wav'} to stdout ({len(plan.chunks)} chunks, {engine})")
        return
    try:
        doc = render_on_ray(plan, output, ray_spec, cache, err, quiet, subtitles, stems, retake_chunks) if ray_spec else \
            render(plan, output, (lambda p: bar.update(task, completed=p.done)) if bar else None, cache=cache, jobs=jobs,
                   subtitles=subtitles, stems=stems, retake_chunks=retake_chunks)
    finally:
        if bar:
            bar.stop()
    if as_json:
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    elif not quiet:
        voices = ", ".join(f"{s}={v['voice']}" for s, v in doc["speakers"].items())
        reused = len(plan.chunks) - doc["rendered"]
        err.print(f"wrote {output} ({doc['duration']:.1f} s, {len(plan.chunks)} chunks, {reused} from cache, {engine}; {voices})",
                  soft_wrap=True)
    from .cli_check import settle

    settle(doc, lambda line: err.print(line, soft_wrap=True), quiet)


def _cap_jobs(jobs: int, quiet: bool) -> int:
    """--jobs above the usable core count only makes workers fight over the cores (and costs memory): capped, with a warning."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if jobs <= cores:
        return jobs
    _warn([f"--jobs {jobs} is more than the {cores} CPU cores here; using {cores} workers"], quiet)
    return cores


def _warn(lines: list[str], quiet: bool) -> None:
    """Warnings go to stderr (the manifest also lists them); --quiet keeps them out."""
    for line in [] if quiet else lines:
        err.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)


def _print_plan(doc: dict) -> None:
    from rich.table import Table

    err.print(f"engine {doc['engine']}; {len(doc['chunks'])} chunks, {doc['words']} words")
    for spk, v in doc["speakers"].items():
        who = f"{spk} ({v['name']})" if v.get("name") else spk
        err.print(escape(f"  {who} -> {v['voice']} ({v['source']}" + (f"; {v['why']})" if v.get("why") else ")")), soft_wrap=True)
    table = Table("#", "speaker", "voice", "words", "seed", "text", show_edge=False)
    for c in doc["chunks"]:
        table.add_row(str(c["index"]), c["speaker"], c["voice"], str(c["words"]), str(c["seed"]), c["text"][:70])
    out.print(table)


def _finishing(options: RenderOptions, music: Path | None, music_gain: float, music_intro: float, music_outro: float,
               duck: float, loudness: str | None, title: str | None, author: str | None, cover: Path | None,
               max_silence: float | None) -> RenderOptions:
    from .mixing import validate

    if music is not None:
        from .mixing import check_music

        check_music(music)
    if max_silence is not None and not 0.05 <= max_silence <= 10:
        raise UsageError("--max-silence must be between 0.05 and 10 seconds")
    finish = FinishOptions(music_gain=music_gain, music_intro=music_intro, music_outro=music_outro, duck=duck,
                           loudness=DEFAULT_LOUDNESS if loudness is None else loudness, title=title, author=author, cover=cover)
    validate(finish)
    return replace(options, music=str(music) if music else None, finish=finish, max_silence=max_silence)


def _speech(numbers: str, lexicon: Path | None):
    from .textclean import speech_options

    return speech_options(numbers, lexicon)


def _job_options(engine: str, chunk: str, max_words: int, seed: int, voice: list[str] | None,
                 distinct: bool, higgs: HiggsSettings) -> RenderOptions:
    if chunk not in CHUNK_METHODS:
        raise UsageError(f"--chunk {chunk!r}: use one of {', '.join(CHUNK_METHODS)}")
    mapping, default = _parse_voices(voice)
    return RenderOptions(engine=engine, chunk=chunk, max_words=max_words, seed=seed, voices=mapping,
                         default_voice=default, distinct=distinct, higgs=higgs)


@app.command()
@reported
def generate(
    transcript: Transcript = None, text: Text = None, out_path: Out = None,
    engine: EngineOpt = "auto",
    voice: Annotated[list[str] | None, typer.Option("--voice", "-v", show_default=False,
                                                    help="Voice NAME (or a clip path) for the text; SPEAKER=NAME maps one speaker.")] = None,
    seed: Seed = DEFAULT_SEED,
    chunk: Annotated[str, typer.Option(help=f"Chunking: {', '.join(CHUNK_METHODS)}.")] = DEFAULT_CHUNK,
    max_words: MaxWords = DEFAULT_MAX_WORDS,
    dry_run: DryRun = False, as_json: Json = False, quiet: Quiet = False,
    cache_dir: CacheDir = None, no_cache: NoCache = False, jobs: Jobs = 1,
    music: Music = None, music_gain: MusicGain = MUSIC_GAIN_DB, music_intro: MusicIntro = 0.0, music_outro: MusicOutro = 0.0,
    duck: Duck = DUCK_DB, loudness: Loudness = None, subtitles: Subtitles = None, stems: Stems = None,
    title: Title = None, author: Author = None, cover: Cover = None, max_silence: MaxSilence = None,
    model: Model = None, codec: Codec = None, revision: Revision = None, device: Device = "auto",
    temperature: Temperature = None, top_k: TopK = None, top_p: TopP = None, ras_window: RasWindow = None,
    ras_max_repeat: RasRepeat = None, max_new_tokens: MaxNew = None, context_chunks: ContextChunks = None,
    scene: Scene = None, ref_in_system: RefInSystem = False, emotion: Emotion = None, speed: Speed = None,
    decoder: Decoder = None, batch: Batch = None, chain_words: ChainWords = None,
    script_format: Format = "auto", emoji: Emoji = "remove", numbers: Numbers = "auto", lexicon: LexiconOpt = None,
    qa: QaMode = "auto", retakes: Retakes = QA_RETAKES, qa_model: QaModel = None, retake_chunks: RetakeChunks = None, ray: RayAddress = None,
    audio_format: AudioFormat = None,
    context_limit: ContextLimit = None,
) -> None:
    """Turn a transcript or text into speech; every speaker gets a voice."""
    higgs = _higgs_settings(model=model, codec=codec, revision=revision, device=device, temperature=temperature,
                            top_k=top_k, top_p=top_p, ras_window=ras_window, ras_max_repeat=ras_max_repeat,
                            max_new_tokens=max_new_tokens, context_chunks=context_chunks, scene=scene,
                            ref_in_system=ref_in_system, emotion=emotion, speed=speed, decoder=decoder, batch=batch,
                            chain_words=chain_words, context_limit=context_limit)
    options = _job_options(engine, chunk, max_words, seed, voice, True, higgs)
    options = _finishing(options, music, music_gain, music_intro, music_outro, duck, loudness, title, author, cover, max_silence)
    options = replace(options, speech=_speech(numbers, lexicon))
    options = replace(options, qa=qa_options(qa, retakes, qa_model))
    _run_job(_load_script(transcript, text, script_format, emoji), options, out_path, dry_run, as_json, quiet,
             cache=_cache(cache_dir, no_cache), jobs=jobs, subtitles=subtitles, stems=stems, retake_chunks=parse_chunks(retake_chunks), ray=ray,
             audio_format=audio_format)


@app.command()
@reported
def dialogue(
    transcript: Transcript = None, text: Text = None, out_path: Out = None,
    engine: EngineOpt = "auto",
    voice: Annotated[list[str] | None, typer.Option("--voice", "-v", show_default=False,
                                                    help="SPEAKER=NAME (repeatable); unmapped speakers get distinct voices.")] = None,
    seed: Seed = DEFAULT_SEED,
    chunk: Annotated[str, typer.Option(help=f"Chunking: {', '.join(CHUNK_METHODS)}.")] = DEFAULT_DIALOGUE_CHUNK,
    max_words: MaxWords = DEFAULT_MAX_WORDS,
    dry_run: DryRun = False, as_json: Json = False, quiet: Quiet = False,
    cache_dir: CacheDir = None, no_cache: NoCache = False, jobs: Jobs = 1,
    music: Music = None, music_gain: MusicGain = MUSIC_GAIN_DB, music_intro: MusicIntro = 0.0, music_outro: MusicOutro = 0.0,
    duck: Duck = DUCK_DB, loudness: Loudness = None, subtitles: Subtitles = None, stems: Stems = None,
    title: Title = None, author: Author = None, cover: Cover = None, max_silence: MaxSilence = None,
    model: Model = None, codec: Codec = None, revision: Revision = None, device: Device = "auto",
    temperature: Temperature = None, top_k: TopK = None, top_p: TopP = None, ras_window: RasWindow = None,
    ras_max_repeat: RasRepeat = None, max_new_tokens: MaxNew = None, context_chunks: ContextChunks = None,
    scene: Scene = None, ref_in_system: RefInSystem = False, decoder: Decoder = None, batch: Batch = None,
    chain_words: ChainWords = None,
    script_format: Format = "auto", emoji: Emoji = "remove", numbers: Numbers = "auto", lexicon: LexiconOpt = None,
    qa: QaMode = "auto", retakes: Retakes = QA_RETAKES, qa_model: QaModel = None, retake_chunks: RetakeChunks = None, ray: RayAddress = None,
    audio_format: AudioFormat = None,
    context_limit: ContextLimit = None,
) -> None:
    """Render a multi-speaker script, one clearly distinct voice per speaker."""
    higgs = _higgs_settings(model=model, codec=codec, revision=revision, device=device, temperature=temperature,
                            top_k=top_k, top_p=top_p, ras_window=ras_window, ras_max_repeat=ras_max_repeat,
                            max_new_tokens=max_new_tokens, context_chunks=context_chunks, scene=scene,
                            ref_in_system=ref_in_system, decoder=decoder, batch=batch, chain_words=chain_words,
                            context_limit=context_limit)
    options = _job_options(engine, chunk, max_words, seed, voice, True, higgs)
    options = _finishing(options, music, music_gain, music_intro, music_outro, duck, loudness, title, author, cover, max_silence)
    options = replace(options, speech=_speech(numbers, lexicon))
    script = _load_script(transcript, text, script_format, emoji)
    if len(script.speakers) < 2 and not quiet:
        err.print("[dim]note: only one speaker in this script; `higgs generate` is the usual command for it[/]")
    options = replace(options, qa=qa_options(qa, retakes, qa_model))
    _run_job(script, options, out_path, dry_run, as_json, quiet, cache=_cache(cache_dir, no_cache), jobs=jobs,
             subtitles=subtitles, stems=stems, retake_chunks=parse_chunks(retake_chunks), ray=ray,
             audio_format=audio_format)


@app.command()
@reported
def clone(
    ref: Annotated[Path, typer.Option("--ref", "-r", help="Reference clip of the voice to clone (3-30 s).")],
    ref_text: Annotated[str | None, typer.Option(
        "--ref-text", show_default=False,
        help="Exact words spoken in the clip (text or a .txt path); without it the clip goes in the scene.")] = None,
    transcript: Transcript = None, text: Text = None, out_path: Out = None,
    save_as: Annotated[str | None, typer.Option("--save-as", help="Also store the clip as a user voice NAME.", show_default=False)] = None,
    engine: EngineOpt = "auto", seed: Seed = DEFAULT_SEED,
    chunk: Annotated[str, typer.Option(help=f"Chunking: {', '.join(CHUNK_METHODS)}.")] = DEFAULT_CHUNK,
    max_words: MaxWords = DEFAULT_MAX_WORDS,
    dry_run: DryRun = False, as_json: Json = False, quiet: Quiet = False,
    cache_dir: CacheDir = None, no_cache: NoCache = False,
    model: Model = None, codec: Codec = None, revision: Revision = None, device: Device = "auto",
    temperature: Annotated[float, typer.Option(help="higgs: sampling temperature 0..1.5 (0.3 suits cloning).", rich_help_panel="Higgs engine")] = 0.3,
    top_k: TopK = None, top_p: TopP = None, max_new_tokens: MaxNew = None, context_chunks: ContextChunks = None,
    scene: Scene = None, ref_in_system: RefInSystem = False, emotion: Emotion = None, speed: Speed = None,
    qa: QaMode = "auto", retakes: Retakes = QA_RETAKES, qa_model: QaModel = None, retake_chunks: RetakeChunks = None,
    context_limit: ContextLimit = None,
) -> None:
    """Speak text in the voice of a reference clip (needs the higgs engine; --save-as works everywhere)."""
    from . import voices

    if ref_text and len(ref_text) < 4096 and ref_text.endswith(".txt") and Path(ref_text).is_file():
        ref_text = Path(ref_text).read_text(encoding="utf-8").strip()
    higgs = _higgs_settings(model=model, codec=codec, revision=revision, device=device, temperature=temperature,
                            top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens, context_chunks=context_chunks,
                            scene=scene, ref_in_system=ref_in_system, emotion=emotion, speed=speed, context_limit=context_limit)
    if save_as:
        saved = voices.add(save_as, ref, ref_text)
        _warn(voices.clip_problems(ref), quiet)
        if not quiet:
            err.print(f"saved voice {saved.name!r} to {saved.clip}")
    if save_as and transcript is None and text is None:
        return
    name = _clone_engine(engine, higgs, bool(save_as), quiet)
    if name is None:
        return
    voices.prepare_clip(ref)  # fail early on a corrupt, silent or badly sized clip
    if not save_as:
        _warn(voices.clip_problems(ref), quiet)
    found = voices.resolve(str(ref.resolve()))  # picks up a sibling .txt/.yaml when present
    voice = replace(found, transcript=ref_text or found.transcript)
    options = RenderOptions(engine=name, chunk=chunk, max_words=max_words, seed=seed, higgs=higgs, qa=qa_options(qa, retakes, qa_model),
                            finish=FinishOptions(loudness=DEFAULT_LOUDNESS))
    _run_job(_load_script(transcript, text), options, out_path, dry_run, as_json, quiet, engine=name, voice=voice,
             cache=_cache(cache_dir, no_cache), retake_chunks=parse_chunks(retake_chunks))


def _clone_engine(requested: str, settings: HiggsSettings, saved: bool, quiet: bool) -> str | None:
    from . import engines

    name, note = engines.choose(requested, settings)
    if engines.engine_class(name).clones:
        if note and not quiet:
            err.print(f"[dim]{escape(note)}[/]", soft_wrap=True)
        return name
    if saved:
        if not quiet:
            err.print(f"note: no audio written: the {name} engine cannot clone voices; cloning needs the higgs engine (GPU + weights)")
        return None
    raise EngineUnavailable(
        f"cloning needs the higgs engine (a CUDA GPU and the weights: `higgs model download`); the {name} engine "
        "cannot clone. To keep the clip for later, add --save-as NAME"
    )


# --- voices ------------------------------------------------------------------------------------------
@voices_app.command("list")
@reported
def voices_list(as_json: Json = False) -> None:
    """List bundled and user voices."""
    from rich.table import Table

    from .voices import library

    problems: list[str] = []
    rows = library(problems)
    _warn(problems, False)
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
    _warn(clip_problems(audio), False)
    err.print(f"added voice {voice.name!r} at {voice.clip}")


@voices_app.command("remove")
@reported
def voices_remove(name: Annotated[str, typer.Argument(help="User voice to delete.")]) -> None:
    """Delete a user voice (bundled voices cannot be removed)."""
    from .voices import remove

    removed = remove(name)
    err.print(f"removed voice {name!r} ({len(removed)} files)")


@app.command("engines")
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


# --- cache -------------------------------------------------------------------------------------------
cache_app = typer.Typer(help="Inspect and trim the chunk cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


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
    doc = _cache(cache_dir, False, create=False).info()
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
    removed, freed = _cache(cache_dir, False, create=False).prune(older_than, _size(max_size) if max_size else None)
    err.print(f"removed {removed} chunks ({freed / 1e6:.1f} MB)")


@cache_app.command("clear")
@reported
def cache_clear(cache_dir: CacheDir = None) -> None:
    """Remove every cached chunk."""
    removed, freed = _cache(cache_dir, False, create=False).clear()
    err.print(f"removed {removed} chunks ({freed / 1e6:.1f} MB)")


# --- build -------------------------------------------------------------------------------------------
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


@app.command("build")
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
) -> None:
    """Build a book: render out-of-date chapters, then bind them; unchanged parts are skipped."""
    from . import engines
    from .build import BuildEvent, build, load_project

    if project.suffix.lower() in (".epub", ".md", ".markdown", ".txt"):  # a book itself: import it first (one narrator)
        from .books import project_for

        project, imported = project_for(project)
        if not quiet:
            edited = f"; your edits kept: {', '.join(imported['edited'])}" if imported.get("edited") else ""
            done = "book unchanged since its import: reusing" if imported.get("reused") else "imported"
            err.print(f"{done} {len(imported['chapters'])} chapters in {project} ({len(imported['skipped'])} parts skipped{edited})", soft_wrap=True)
    spec = load_project(project)
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
        summary = build(spec, engine, _cache(cache_dir, no_cache), _cap_jobs(jobs, quiet), force, report, ray=on_ray)
    finally:
        stop()
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    from .cli_check import strict_build

    strict_build(summary)


@app.command("bind")
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


@app.command("inspect")
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


app.command("import")(reported(import_cmd))  # `higgs import BOOK -o DIR` (cli_import.py)

from .cli_check import register as _register_check  # noqa: E402 - needs `reported` and the consoles above

_register_check(app, out, err, reported)

app.command("serve")(reported(serve_cmd))  # cli_serve.py: the OpenAI-compatible speech server
