"""Project builds: a YAML/TOML book file -> per-chapter audio + manifests -> one bound book; only stale parts rebuild.

A chapter is stale when its output or manifest is missing or when its build key changed. The key
covers every chunk's cache key (engine, voices, text, seeds, context), the pauses and the output
format, so a no-op rebuild plans the book, compares keys, and renders nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .cache import ChunkCache, make_key
from .errors import UsageError
from .options import (
    CHUNK_METHODS,
    DEFAULT_LOUDNESS,
    DUCK_DB,
    ENGINE_NAMES,
    MUSIC_GAIN_DB,
    OUTPUT_FORMATS,
    SAMPLE_RATE,
    FinishOptions,
    HiggsSettings,
    RaySettings,
    RenderOptions,
)

_FIELDS = {"title", "author", "engine", "voices", "chunk", "max_words", "seed", "format", "build_dir", "output",
           "chapters", "higgs", "pauses", "cover", "music", "music_gain", "duck", "loudness",
           "lexicon", "numbers", "emoji", "language",  # reading inputs: lexicon, numbers, emoji; language is metadata
           "qa", "ray",
           "speakers"}  # descriptions that casting reads (cast.py)  # the quality gate: a mode, or {mode, retakes, model}; ray: cluster.py


@dataclass(frozen=True)
class Chapter:
    source: Path
    title: str | None
    output: Path
    voice: str | None = None  # this chapter's narrator (NARRATOR) voice: `voice:` in its entry, from an import's voice hint


@dataclass(frozen=True)
class Project:
    """A parsed book file: where chapters come from, how to render them, where the book goes."""

    path: Path
    title: str | None
    author: str | None
    chapters: tuple[Chapter, ...]
    options: RenderOptions
    output: Path | None
    cover: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    ray: RaySettings | None = None  # render on Ray (cluster.py); `higgs build --ray` overrides the address


def _read(path: Path) -> dict[str, Any]:
    from .yamlsafe import YAML_MAX_BYTES

    try:
        if path.is_file() and path.stat().st_size > YAML_MAX_BYTES:
            raise UsageError(f"{path}: project file is larger than {YAML_MAX_BYTES >> 10} KB; a book file lists chapters in a few KB")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise UsageError(f"{path}: project file not found; check the path") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read the project file ({e}); save it as UTF-8") from e
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            from .yamlsafe import load_yaml

            data = load_yaml(text, str(path))
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - yaml and toml raise their own error types
        raise UsageError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'} ({str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a project file is a mapping with at least `chapters:`")
    return data


def load_project(path: Path) -> Project:
    data = _read(path)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise UsageError(f"{path}: unknown field {unknown[0]!r}; known fields: {', '.join(sorted(_FIELDS))}")
    _check_types(path, data)
    base = Path(os.path.normpath(path.parent))
    fmt = "." + str(data.get("format", "wav")).lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"{path}: format {fmt!r} is not supported for chapters; use one of {', '.join(OUTPUT_FORMATS)}")
    if data.get("chunk", "paragraph") not in CHUNK_METHODS:
        raise UsageError(f"{path}: chunk {data['chunk']!r}; use one of {', '.join(CHUNK_METHODS)}")
    build_dir = Path(os.path.normpath(base / str(data.get("build_dir", "build"))))
    entries = data.get("chapters") or []
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{path}: `chapters:` must list at least one transcript file")
    for speaker, said in (data.get("speakers") or {}).items():
        if not isinstance(said, str) or not said.strip():
            raise UsageError(f"{path}: speakers: {speaker}: give a description as text, such as `{speaker}: a young woman`")
    chapters = []
    for entry in entries:
        spec = entry if isinstance(entry, dict) else {"file": entry}
        if "file" not in spec:
            raise UsageError(f"{path}: each chapter needs a `file:` (a transcript path)")
        if spec.get("skip"):  # marked by `higgs import` (front/back matter, licences): kept, not narrated
            continue
        source = base / str(spec["file"])
        title = spec.get("title")
        if title is not None and (isinstance(title, bool) or not isinstance(title, str | int | float)):
            raise UsageError(f"{path}: chapter {spec['file']!r} has a title of type {type(title).__name__}; write the title as text")
        chapters.append(Chapter(source, None if title is None else str(title), build_dir / f"{source.stem}{fmt}", _chapter_voice(path, spec)))
    try:
        higgs = replace(HiggsSettings(), **(data.get("higgs") or {}))
        pauses = {f"pause_{k}": float(v) for k, v in (data.get("pauses") or {}).items()}
        finish = FinishOptions(music_gain=float(data.get("music_gain", MUSIC_GAIN_DB)), duck=float(data.get("duck", DUCK_DB)),
                               loudness=data.get("loudness", DEFAULT_LOUDNESS), title=_text(data.get("title")), author=_text(data.get("author")))
        options = RenderOptions(engine=str(data.get("engine", "auto")), chunk=str(data.get("chunk", "paragraph")),
                                max_words=int(data.get("max_words", 60)), seed=int(data.get("seed", 0)),
                                voices={str(k).upper(): str(v) for k, v in (data.get("voices") or {}).items()},
                                higgs=higgs, music=str(base / str(data["music"])) if data.get("music") else None,
                                finish=finish, descriptions={str(k).upper(): str(v) for k, v in (data.get("speakers") or {}).items()}, **pauses)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{path}: bad setting ({e}); see the README's project file section") from e
    from .mixing import validate

    validate(options.finish)
    _check_settings(path, options)
    if options.music:
        from .mixing import check_music

        check_music(options.music, f"{path}: music:")
    output = build_dir / str(data["output"]) if data.get("output") else None
    cover = base / str(data["cover"]) if data.get("cover") else None
    if cover is not None:
        from .containers import cover_kind

        cover_kind(cover)
    _check_files(path, tuple(chapters), output)
    options, extra = _reading(path, base, data, options)
    options = replace(options, qa=_qa(path, data.get("qa")))
    ray = None
    if data.get("ray") is not None:
        from .cluster import settings_from

        ray = settings_from(data["ray"], str(path))
    return Project(path, _text(data.get("title")), _text(data.get("author")), tuple(chapters), options, output, cover, extra, ray=ray)


def _reading(path: Path, base: Path, data: dict[str, Any], options: RenderOptions) -> tuple[RenderOptions, dict[str, Any]]:
    """The project's `lexicon:`, `numbers:` and `emoji:` (validated as on the command line), and its language."""
    from .textclean import reading, speech_options

    lexicon = base / str(data["lexicon"]) if data.get("lexicon") else None
    try:
        speech = speech_options(str(data.get("numbers", "auto")), lexicon)
        clean = reading("auto", str(data.get("emoji", "remove")))
    except UsageError as e:
        raise UsageError(f"{path}: {str(e).lstrip('-')}") from e
    return replace(options, speech=speech), {"clean": clean, "language": data.get("language")}


def _qa(path: Path, value: Any) -> Any:
    """The project's `qa:`: `retake`, or `{mode: strict, retakes: 3, model: DIR}` (validated as on the command line)."""
    from .cli_check import qa_options
    from .options import QaOptions

    if value is None:
        return QaOptions()
    spec = value if isinstance(value, dict) else {"mode": value}
    unknown = sorted(set(spec) - {"mode", "retakes", "model"})
    if unknown:
        raise UsageError(f"{path}: qa: unknown key {unknown[0]!r}; give mode, retakes and/or model")
    try:
        return qa_options(str(spec.get("mode", "auto")), int(spec.get("retakes", QaOptions.retakes)), spec.get("model"))
    except (TypeError, ValueError) as e:
        raise UsageError(f"{path}: qa: bad setting ({e}); e.g. `qa: {{mode: retake, retakes: 2}}`") from e
    except UsageError as e:
        raise UsageError(f"{path}: qa: {str(e).lstrip('-')}") from e


_TEXT, _NUMBER = ((str, int, float), "text"), ((int, float), "a number")
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {  # what each project field may hold (yes/no is never a number or a name)
    "title": _TEXT, "author": _TEXT, "engine": ((str,), "an engine name"), "voices": ((dict,), "a mapping SPEAKER: voice"),
    "chunk": ((str,), "a chunking method"), "max_words": ((int,), "a whole number"), "seed": ((int,), "a whole number"),
    "format": ((str,), "an extension such as wav"), "build_dir": ((str,), "a folder"), "output": ((str,), "a file name"),
    "chapters": ((list,), "a list of transcript files"), "higgs": ((dict,), "a mapping of higgs settings"),
    "pauses": ((dict,), "a mapping such as {chapter: 2.0}"), "cover": ((str,), "an image file"), "music": ((str,), "an audio file"),
    "music_gain": _NUMBER, "duck": _NUMBER, "loudness": ((str, int, float), "a preset name or LUFS number"),
    "lexicon": ((str,), "a lexicon file"), "numbers": ((str,), "a numbers mode"), "emoji": ((str,), "an emoji mode"),
    "language": ((str,), "a language code"), "qa": ((str, dict), "a QA mode or a mapping {mode: ..., retakes: ...}"),
    "ray": ((str, dict), "an address (local, auto, HOST:PORT) or a mapping of Ray settings"),
    "speakers": ((dict,), "a mapping SPEAKER: description, such as MAYA: a young woman"),
}


def _check_types(path: Path, data: dict[str, Any]) -> None:
    """Every field's type, before anything is built from it: `title: [a, b]` or `seed: yes` is a mistake to name."""
    for key, value in data.items():
        allowed, label = _TYPES.get(key, ((object,), ""))
        if value is not None and (isinstance(value, bool) or not isinstance(value, allowed)):
            raise UsageError(f"{path}: `{key}:` is {type(value).__name__} {value!r:.40}; it must be {label}")
    for key, value in (data.get("pauses") or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 60:
            raise UsageError(f"{path}: pauses: {key}: {value!r:.40}; give seconds between 0 and 60")
    if isinstance(data.get("max_words"), int) and data["max_words"] < 1:
        raise UsageError(f"{path}: `max_words:` must be at least 1")


def _chapter_voice(path: Path, spec: dict[str, Any]) -> str | None:
    """A chapter entry's `voice:` (its narrator), checked now: an unknown voice stops the build before anything renders."""
    voice = spec.get("voice")
    if voice is None:
        return None
    if not isinstance(voice, str) or not voice.strip():
        raise UsageError(f"{path}: chapter {spec['file']!r}: `voice:` must be a voice name (see `higgs voices list`)")
    from .errors import VoiceError
    from .voices import resolve

    try:
        resolve(voice.strip())
    except VoiceError as e:
        raise UsageError(f"{path}: chapter {spec['file']!r}: {e}") from e
    return voice.strip()


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _check_settings(path: Path, options: RenderOptions) -> None:
    from .engines.higgs import validate_settings  # torch-free

    try:
        validate_settings(options.higgs)
    except UsageError as e:
        raise UsageError(f"{path}: higgs: {e}") from e
    except TypeError as e:
        raise UsageError(f"{path}: higgs: a setting has the wrong type ({e}); numbers must be written as numbers") from e
    if options.engine not in ENGINE_NAMES:
        raise UsageError(f"{path}: engine {options.engine!r}; use one of {', '.join(ENGINE_NAMES)}")


def _check_files(path: Path, chapters: tuple[Chapter, ...], output: Path | None) -> None:
    """Chapter files exist, and no output lands on a chapter's transcript or audio, another chapter's, or the book file."""
    from .audio import output_format
    from .containers import is_container

    seen: dict[Path, Chapter] = {}
    for chapter in chapters:
        if not chapter.source.is_file():
            raise UsageError(f"{path}: chapter file {chapter.source} not found; fix its `chapters:` entry")
        other = seen.get(chapter.output)
        if other is not None:
            raise UsageError(f"{path}: chapters {other.source.name} and {chapter.source.name} would both be built as "
                             f"{chapter.output}; rename one of the transcript files")
        seen[chapter.output] = chapter
    sources = {c.source.resolve() for c in chapters} | {path.resolve()}
    for out in list(seen) + ([output] if output else []):
        if out.resolve() in sources:
            raise UsageError(f"{path}: output {out} is also a chapter transcript or the project file; writing it would destroy it")
    if output is None:
        return
    if output.resolve() in {o.resolve() for o in seen} or output.with_suffix(".json").resolve() in {o.with_suffix(".json").resolve() for o in seen}:
        raise UsageError(f"{path}: book `output: {output.name}` is also a chapter's audio file in {output.parent}; "
                         "give the book another name (e.g. book.m4b)")
    if not is_container(output):
        output_format(output)


@dataclass(frozen=True)
class BuildEvent:
    """Progress of a build: a chapter skipped, started or finished, or the book bound."""

    kind: str  # "skip", "start", "done", "bind", "book-skip"
    name: str
    detail: dict[str, Any] = field(default_factory=dict)


def _stamp(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def build(project: Project, engine: str, cache: ChunkCache, jobs: int = 1, force: bool = False,
          on_event: Callable[[BuildEvent], None] | None = None,
          on_progress: Callable[[Any], None] | None = None, ray: RaySettings | None = None,
          retake: dict[int, frozenset[int]] | None = None) -> dict[str, Any]:
    """Render stale chapters, then bind the book if anything changed. Returns a summary document.

    `retake` (chapter position -> chunk indices, from `--retake-chunks CHAPTER:CHUNKS`) re-renders those chunks of
    those chapters with a new take (and, with audio context, the chunks that heard them), also when the chapter is
    up to date; the rest comes from the cache, and the book is bound again because its chapters' takes changed.

    With the higgs engine and `higgs: {batch: N}`, the stale chapters' missing chunks are first rendered
    together as one batch (rendering.prerender); each chapter then assembles from the cache. With `ray`
    (or the project's `ray:`) they render on a Ray cluster first instead (cluster.prerender).
    """
    import tempfile

    from . import engines
    from .pipeline import check_job_files, render
    from .planning import chunk_keys, make_plan
    from .rendering import prerender
    from .scripts import read

    emit = on_event or (lambda e: None)
    options = replace(project.options, engine=engine)
    summary: dict[str, Any] = {"project": str(project.path), "engine": engine, "chapters": []}
    stale = []
    scripts = [read(chapter.source, "auto", project.extra.get("clean")) for chapter in project.chapters]
    if project.output:
        from .containers import check_output

        project.output.parent.mkdir(parents=True, exist_ok=True)
        check_output(project.output)
    voices = book_cast(scripts, options)
    for n, (chapter, script) in enumerate(zip(project.chapters, scripts, strict=True)):
        plan = make_plan(script, options, engine, _narrated_by(voices, chapter))
        asked = sorted((retake or {}).get(n, ()))
        if asked and asked[-1] >= len(plan.chunks):  # every chapter is checked before the first one renders
            raise UsageError(f"--retake-chunks {chapter.output.stem}:{asked[-1]}: that chapter has chunks 0..{len(plan.chunks) - 1} "
                             f"(see {chapter.output.with_suffix('.json').name}, or --dry-run it with higgs generate)")
        warnings = [n for n in script.notes + plan.notes if n.kind == "warning"]
        if warnings:  # what reading the chapter could not honour (SSML, unspeakable letters): said, never silent
            emit(BuildEvent("warnings", chapter.source.name, {"count": len(warnings), "line": warnings[0].line,
                                                              "first": warnings[0].message}))
        check_job_files(plan, chapter.output)  # every chapter's music cues, before the first chapter renders
        key = make_key({"chunks": chunk_keys(plan), "options": repr(replace(options, higgs=None, voices={})),
                        "format": chapter.output.suffix})
        stamp = _stamp(chapter.output.with_suffix(".json"))
        row = {"source": str(chapter.source), "output": str(chapter.output), "built": False, "build_key": key,
               **({"retake_chunks": asked} if asked else {})}
        if not force and not asked and chapter.output.is_file() and stamp and stamp.get("build_key") == key:
            emit(BuildEvent("skip", chapter.source.name))
            row["title"], row["takes_key"] = _title(chapter, stamp), stamp.get("takes_key")
            if stamp.get("qa"):  # a strict build still fails on chunks an earlier build flagged
                row["qa"] = {k: stamp["qa"][k] for k in ("mode", "flagged", "flagged_chunks")}
        else:
            stale.append((chapter, plan, row))
        summary["chapters"].append(row)
    ray = ray or project.ray
    with tempfile.TemporaryDirectory(prefix="higgs-build-") as scratch:
        if not cache.enabled and (options.higgs.batch > 1 or ray):  # --no-cache: the batch still needs somewhere to put chunks
            cache = ChunkCache(Path(scratch))
        batched = [0] * len(stale)
        if ray and stale:
            from .cluster import prerender as on_ray

            batched = on_ray([plan for _, plan, _ in stale], cache, ray, lambda p: emit(BuildEvent("ray-progress", ray.address, {"progress": p})))
        elif len(stale) > 1 and engines.engine_class(engine).batches and options.higgs.batch > 1:
            emit(BuildEvent("batch", f"{len(stale)} chapters", {"chunks": sum(len(p.chunks) for _, p, _ in stale),
                                                               "width": options.higgs.batch}))
            batched = prerender([plan for _, plan, _ in stale], cache, _every_twentieth(emit))
        for (chapter, plan, row), ahead in zip(stale, batched, strict=True):
            _render_chapter(chapter, plan, row, cache, jobs, emit, on_progress, render, ahead)
    if project.output:
        summary["book"] = _bind_book(project, summary["chapters"], options, force, emit)
    return summary


def book_cast(scripts: list[Any], options: RenderOptions) -> dict[str, Any]:
    """One cast for the whole book, so a speaker keeps one voice in every chapter file (and the voice map may
    name speakers that some chapters lack)."""
    from .cast import cast
    from .planning import script_text

    speakers = tuple(dict.fromkeys(spk for script in scripts for spk in script.speakers))
    text = "\n".join(script_text(script) for script in scripts)
    return cast(speakers, options.voices, options.default_voice, options.distinct, text, options.descriptions).voices


def _narrated_by(voices: dict[str, Any], chapter: Chapter) -> dict[str, Any]:
    """The book's cast, with this chapter's own narrator voice where its entry names one."""
    if not chapter.voice:
        return voices
    from .options import DEFAULT_SPEAKER
    from .voices import resolve

    return {**voices, DEFAULT_SPEAKER: resolve(chapter.voice)}


def _every_twentieth(emit: Callable[[BuildEvent], None]) -> Callable[[int, int], None]:
    """Progress of a batch pass as events, about every 5% (and at the end)."""
    def report(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            emit(BuildEvent("batch-progress", "batch", {"done": done, "total": total}))
    return report


def _render_chapter(chapter: Chapter, plan: Any, row: dict[str, Any], cache: ChunkCache, jobs: int,
                    emit: Callable[[BuildEvent], None], on_progress: Callable[[Any], None] | None, render: Any,
                    batched: int = 0) -> None:
    """Render (or, after a batch pass, assemble) one chapter; `batched` chunks of it were rendered in that pass."""
    chapter.output.parent.mkdir(parents=True, exist_ok=True)
    emit(BuildEvent("start", chapter.source.name, {"chunks": len(plan.chunks)}))
    doc = render(plan, chapter.output, on_progress, cache=cache, jobs=jobs, retake_chunks=frozenset(row.get("retake_chunks", ())))
    doc["build_key"], doc["batched"] = row["build_key"], batched
    doc["takes_key"] = row["takes_key"] = _takes_key(doc)
    _write_json(chapter.output.with_suffix(".json"), doc)
    flagged = (doc.get("qa") or {}).get("flagged", 0)
    emit(BuildEvent("done", chapter.source.name, {"duration": doc["duration"], "rendered": doc["rendered"] + batched, "flagged": flagged}))
    if doc.get("qa"):
        row["qa"] = {k: doc["qa"][k] for k in ("mode", "flagged", "flagged_chunks")}
    row.update(built=True, title=_title(chapter, doc))


def _takes_key(doc: dict[str, Any]) -> str | None:
    """Which takes a chapter file holds (None: the plan's seeds throughout): the book is bound again when it changes."""
    takes = [[row["index"], row["take"]] for row in doc["chunks"] if row.get("take")]
    return make_key({"takes": takes})[:16] if takes else None


def chapter_retakes(project: Project, asked: list[tuple[str, frozenset[int]]]) -> dict[int, frozenset[int]]:
    """`--retake-chunks CHAPTER:CHUNKS` as chapter position -> chunk indices. CHAPTER is the chapter's number in the
    project (1 = the first), or the name or stem of its transcript or of its output file."""
    out: dict[int, frozenset[int]] = {}
    for name, chunks in asked:
        names = [(c.source.name, c.source.stem, c.output.name, c.output.stem) for c in project.chapters]
        found = next((n for n, known in enumerate(names) if name in known), None)
        if found is None and name.isdigit() and 1 <= int(name) <= len(project.chapters):
            found = int(name) - 1
        if found is None:
            raise UsageError(f"--retake-chunks {name}:...: {project.path.name} has no chapter {name!r}; name it by number "
                             f"(1-{len(project.chapters)}) or by file, e.g. {project.chapters[0].output.stem}:3")
        out[found] = out.get(found, frozenset()) | chunks
    return out


def _title(chapter: Chapter, manifest: dict[str, Any]) -> str:
    headings = manifest.get("chapters") or []
    return chapter.title or (headings[0]["title"] if headings else chapter.source.stem)


def _bind_book(project: Project, chapters: list[dict[str, Any]], options: RenderOptions, force: bool,
               emit: Callable[[BuildEvent], None]) -> dict[str, Any]:
    out = project.output
    takes = [c.get("takes_key") for c in chapters]
    key = make_key({"chapters": [c["build_key"] for c in chapters], "titles": [c["title"] for c in chapters],
                    "title": project.title, "author": project.author, "gap": options.pause_chapter,
                    "cover": str(project.cover) if project.cover else None, **({"takes": takes} if any(takes) else {})})
    stamp_path = out.with_name(out.name + ".json")
    stamp = _stamp(stamp_path)
    if not force and out.is_file() and stamp and stamp.get("build_key") == key:
        emit(BuildEvent("book-skip", out.name))
        return {"output": str(out), "built": False}
    emit(BuildEvent("bind", out.name))
    files = [Path(c["output"]) for c in chapters]
    titles = [c["title"] for c in chapters]
    doc = bind_book(files, out, options.pause_chapter, titles, project.title, project.author, project.cover)
    doc = {**doc, "build_key": key}
    _write_json(stamp_path, doc)
    return {"output": str(out), "built": True, **{k: v for k, v in doc.items() if k != "build_key"}}


def bind_book(files: list[Path], out: Path, gap: float, titles: list[str], title: str | None = None,
              author: str | None = None, cover: Path | None = None) -> dict[str, Any]:
    """One book from chapter files: m4b/m4a through ffmpeg (chapters, metadata, cover), else joined audio."""
    from .containers import bind, check_audio_input, check_output, is_container
    from .files import check_not_input

    check_output(out)
    check_not_input(out, {f"chapter file {p.name}": p for p in files}, "book")
    for path in files:
        check_audio_input(path)

    if is_container(out):
        return bind(files, out, title=title, author=author, cover=cover, chapter_titles=titles)
    return concatenate(files, out, gap, titles)


def concatenate(files: list[Path], out: Path, gap: float, titles: list[str]) -> dict[str, Any]:
    """Join chapter files (24 kHz mono) with `gap` seconds between them, streaming block by block."""
    from .audio import AudioWriter, check_writable, silence
    from .containers import read_blocks

    check_writable(out)
    chapters = []
    with AudioWriter(out, SAMPLE_RATE) as writer:
        for i, path in enumerate(files):
            if i:
                writer.write(silence(gap, SAMPLE_RATE))
            start = writer.frames / SAMPLE_RATE
            for block in read_blocks(path, SAMPLE_RATE):
                writer.write(block)
            chapters.append({"title": titles[i], "start": round(start, 3), "end": round(writer.frames / SAMPLE_RATE, 3)})
        duration = writer.frames / SAMPLE_RATE
    return {"duration": round(duration, 3), "chapters": chapters}
