"""The `higgs` command line: the app, the rendering commands (generate, dialogue, clone) and where every other command lives.

Shared option types, consoles and exit handling are in cli_common.py; each group of other commands has its own cli_*.py.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from . import __version__
from .cli_book import bind_cmd, build_cmd, inspect_cmd
from .cli_cache import cache_app
from .cli_check import QaMode, QaModel, RetakeChunks, Retakes, parse_chunks, qa_options
from .cli_common import (
    AudioFormat,
    Author,
    Batch,
    CacheDir,
    ChainWords,
    Codec,
    ContextChunks,
    ContextLimit,
    Cover,
    Decoder,
    Device,
    DryRun,
    Duck,
    Emotion,
    EngineOpt,
    Jobs,
    Json,
    Loudness,
    MaxNew,
    MaxSilence,
    MaxWords,
    Model,
    Music,
    MusicGain,
    MusicIntro,
    MusicOutro,
    NoCache,
    Out,
    Quiet,
    RasRepeat,
    RasWindow,
    RefInSystem,
    Revision,
    Scene,
    Seed,
    Speed,
    Stems,
    Subtitles,
    Temperature,
    Text,
    Title,
    TopK,
    TopP,
    Transcript,
    cap_jobs,
    chunk_cache,
    err,
    out,
    progress_bar,
    reported,
    warn,
)
from .cli_import import Emoji, Format, LexiconOpt, Numbers, import_cmd
from .cli_model import model_app
from .cli_ray import RayAddress, ray_settings, render_on_ray
from .cli_serve import serve_cmd
from .cli_voices import engines_cmd, voices_app
from .errors import EngineUnavailable, UsageError
from .options import (
    CHUNK_METHODS,
    DEFAULT_CHUNK,
    DEFAULT_DIALOGUE_CHUNK,
    DEFAULT_LOUDNESS,
    DEFAULT_MAX_WORDS,
    DEFAULT_SEED,
    DUCK_DB,
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
app.add_typer(voices_app, name="voices")
app.add_typer(model_app, name="model")
app.add_typer(cache_app, name="cache")


def _version(value: bool) -> None:
    if value:
        out.print(f"higgs {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False) -> None:
    """higgs: turn transcripts into finished speech."""



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


def _run_job(script, options: RenderOptions, output: Path | None, dry_run: bool, as_json: bool, quiet: bool,
             engine: str | None = None, voice: Any = None, cache: Any = None, jobs: int = 1,
             subtitles: Path | None = None, stems: Path | None = None, retake_chunks: frozenset[int] = frozenset(),
             ray: str | None = None, audio_format: str | None = None) -> None:
    """Plan, then print the plan (dry run) or render it; `voice` gives every speaker one voice."""
    from . import engines
    from .pipeline import render
    from .planning import chunk_keys, make_plan, manifest

    if output is None and not dry_run:
        raise UsageError("no output file; add -o OUT.wav (or --dry-run to only plan)")
    jobs = cap_jobs(jobs, quiet)
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
    bar, task = progress_bar(quiet or ray_spec is not None)  # on Ray: one bar across the cluster instead
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
             cache=chunk_cache(cache_dir, no_cache), jobs=jobs, subtitles=subtitles, stems=stems, retake_chunks=parse_chunks(retake_chunks), ray=ray,
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
    _run_job(script, options, out_path, dry_run, as_json, quiet, cache=chunk_cache(cache_dir, no_cache), jobs=jobs,
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
        warn(voices.clip_problems(ref), quiet)
        if not quiet:
            err.print(f"saved voice {saved.name!r} to {saved.clip}")
    if save_as and transcript is None and text is None:
        return
    name = _clone_engine(engine, higgs, bool(save_as), quiet)
    if name is None:
        return
    voices.prepare_clip(ref)  # fail early on a corrupt, silent or badly sized clip
    if not save_as:
        warn(voices.clip_problems(ref), quiet)
    found = voices.resolve(str(ref.resolve()))  # picks up a sibling .txt/.yaml when present
    voice = replace(found, transcript=ref_text or found.transcript)
    options = RenderOptions(engine=name, chunk=chunk, max_words=max_words, seed=seed, higgs=higgs, qa=qa_options(qa, retakes, qa_model),
                            finish=FinishOptions(loudness=DEFAULT_LOUDNESS))
    _run_job(_load_script(transcript, text), options, out_path, dry_run, as_json, quiet, engine=name, voice=voice,
             cache=chunk_cache(cache_dir, no_cache), retake_chunks=parse_chunks(retake_chunks))


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


# --- the other commands, in the order --help lists them ----------------------------------------------
app.command("engines")(engines_cmd)  # cli_voices.py
app.command("build")(build_cmd)  # cli_book.py
app.command("bind")(bind_cmd)
app.command("inspect")(inspect_cmd)
app.command("import")(reported(import_cmd))  # cli_import.py: `higgs import BOOK -o DIR`

from .cli_check import register as _register_check  # noqa: E402 - needs `reported` and the consoles

_register_check(app, out, err, reported)

app.command("serve")(reported(serve_cmd))  # cli_serve.py: the OpenAI-compatible speech server
