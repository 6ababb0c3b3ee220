"""Orchestration: a plan rendered chunk by chunk (rendering.py), joined into one output file and its manifest, or streamed.

Planning (script -> Plan, cache keys, the manifest) lives in planning.py; its public names are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import AudioWriter, fade_edges, silence, trim_silence
from .cache import ChunkCache, Entry
from .errors import OutputError
from .options import SAMPLE_RATE
from .planning import (  # noqa: F401 - re-exported: the pipeline's public face
    MANIFEST_VERSION,
    Plan,
    Progress,
    all_keys,
    cast_notes,
    check_cast,
    chunk_keys,
    chunk_seeds,
    gap_before,
    make_plan,
    manifest,
    script_text,
    spoken_chunks,
    voice_fingerprint,
)
from .rendering import Renderer, prerender  # noqa: F401 - prerender re-exported


def _cue_path(name: str | None, plan: Plan) -> str | None:
    """Music named in a transcript is found beside the transcript."""
    if name is None:
        return None
    path = Path(name).expanduser()
    if not path.is_absolute() and plan.script.source and Path(plan.script.source).is_file():
        path = Path(plan.script.source).parent / path
    return str(path)


def _chapters(doc: dict[str, Any], duration: float) -> list[tuple[str, float, float]]:
    marks = doc.get("chapters") or []
    return [(m["title"], m["start"], marks[i + 1]["start"] if i + 1 < len(marks) else duration) for i, m in enumerate(marks)]


@dataclass
class _Timeline:
    """What the speech pass records for the finishing pass: chunk times and music cues (speech timeline)."""

    timings: list[tuple[float, float]]
    infos: list[dict]
    cues: list[tuple[float, str | None]]
    duration: float = 0.0
    plan: Plan | None = None  # the plan as rendered: the quality gate may have changed chunks' takes (seeds)
    keys: list[str] | None = None


def _speech_pass(plan: Plan, target: Path, keys: list[str], cache: ChunkCache, jobs: int, subtype: str | None,
                 on_progress: Callable[[Progress], None] | None, gate: Any = None, takes: list[int] | None = None) -> _Timeline:
    started = time.monotonic()
    line = _Timeline([], [], [(0.0, plan.options.music)] if plan.options.music else [])
    renderer = Renderer(plan, keys, cache, jobs)
    renderer.takes = list(takes or renderer.takes)
    if gate is not None and gate.mode in ("retake", "strict"):
        renderer.settle_after_batch()
    with AudioWriter(target, SAMPLE_RATE, subtype) as writer:
        for i, entry, hit in renderer:
            chunk = plan.chunks[i]
            qa = None
            if gate is not None:
                entry, hit, qa = gate.settle(renderer, i, entry, hit)
            audio = spoken(plan, entry.audio)
            gap_start = writer.frames / SAMPLE_RATE
            line.cues += [(gap_start, _cue_path(c.music, plan)) for c in chunk.controls_before if c.kind == "music"]
            heading = plan.script.segments[chunk.paragraph].heading
            writer.write(silence(gap_before(plan.chunks[i - 1] if i else None, chunk, plan.options, heading), SAMPLE_RATE))
            start = writer.frames / SAMPLE_RATE
            writer.write(audio)
            end = writer.frames / SAMPLE_RATE
            line.timings.append((start, end))
            line.cues += [(end, _cue_path(c.music, plan)) for c in chunk.controls_after if c.kind == "music"]
            line.infos.append({**entry.info, "cached": hit, **({"take": renderer.takes[i]} if renderer.takes[i] else {}),
                               **({"qa": qa} if qa is not None else {})})
            if on_progress:
                on_progress(Progress(i + 1, len(plan.chunks), time.monotonic() - started, chunk, hit))
        if plan.chunks:
            writer.write(silence(sum(c.seconds for c in plan.chunks[-1].controls_after if c.kind == "pause"), SAMPLE_RATE))
        line.duration = writer.frames / SAMPLE_RATE
    line.plan, line.keys = renderer.plan, renderer.keys
    return line


def render(plan: Plan, output: Path, on_progress: Callable[[Progress], None] | None = None, cache: ChunkCache | None = None,
           jobs: int = 1, subtitles: Path | None = None, stems: Path | None = None, retake_chunks: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Synthesise (or fetch from the cache) every chunk in order and stream the joined speech to `output`.

    Each chunk uses its kept take (takes.py); `retake_chunks` get a new take. The quality gate (`options.qa`)
    hears every chunk as it comes and, in retake mode, re-renders failing ones before they are written.

    The speech goes to a temporary float wav first and the finishing pass (mixing.finish) writes `output`
    atomically: music, the programme loudness and the true-peak limiter, so no output ever clips (every
    output stays at or below the ceiling, -1 dBTP unless a preset asks for less).
    """
    import os

    from .containers import check_output
    from .files import sweep_stale, temp_path
    from .mixing import finish, validate
    from .subtitles import check_subtitle_path, write_subtitles

    check_output(output)
    if subtitles:
        check_subtitle_path(subtitles)
    check_job_files(plan, output, subtitles, stems)
    cache = cache or ChunkCache(None)
    from .takes import prepare

    ready = prepare(plan, cache, chunk_keys, retake_chunks)
    plan = ready.plan
    keys = chunk_keys(plan)
    # everything is written under temp names and the audio renamed into place last, so a late failure
    # (subtitles, stems, a full disk) leaves neither a half-written file nor audio without its companions
    sweep_stale(output)
    staged = temp_path(output, ".staged" + output.suffix.lower())
    try:
        validate(plan.options.finish)
        speech = temp_path(output, ".speech.wav")
        try:
            line = _speech_pass(plan, speech, keys, cache, jobs, "FLOAT", on_progress, ready.gate, ready.takes)
            doc = manifest(line.plan, output, line.keys, line.timings, line.duration, line.infos)
            regions = [(a, b, c.speaker) for (a, b), c in zip(line.timings, plan.chunks, strict=True) if b > a]
            result = finish(speech, staged, speech_regions=regions, music_cues=line.cues, options=plan.options.finish,
                            chapters=_chapters(doc, line.duration), stems=stems)
        finally:
            speech.unlink(missing_ok=True)
        _shift(doc, result["offset"])
        doc["duration"], doc["finish"] = result["duration"], {**result, "output": str(output)}
        ready.summarise(doc)
        if subtitles:
            doc["subtitles"] = {"path": str(subtitles), "cues": write_subtitles(doc["chunks"], subtitles)}
        os.replace(staged, output)
    finally:
        staged.unlink(missing_ok=True)
    return doc


def check_job_files(plan: Plan, output: Path, subtitles: Path | None = None, stems: Path | None = None) -> None:
    """Before any synthesis: no output overwrites an input, and every music file the job names is usable audio."""
    from .files import check_not_input
    from .mixing import check_music

    inputs: dict[str, Path | str | None] = {"transcript": plan.script.source if plan.script.source and Path(plan.script.source).is_file() else None,
                                           "--music file": plan.options.music, "--cover image": plan.options.finish.cover}
    for spk, voice in plan.cast.items():
        inputs[f"voice clip of {spk}"] = voice.clip
    cues = [(c.line, control.music) for c in plan.chunks for control in c.controls_before + c.controls_after
            if control.kind == "music" and control.music]
    for line, name in cues:
        where = f"{plan.script.source or '<text>'}:{line}: [music: {name}]"
        path = _cue_path(name, plan)
        inputs[f"music of {where}"] = path
        check_music(path, where)
    if plan.options.music:
        check_music(plan.options.music)
    check_not_input(output, inputs)
    if subtitles is not None:
        check_not_input(subtitles, {**inputs, "audio output": output}, "subtitles file")
    if stems is not None:
        check_stems_folder(Path(stems), output)


def check_stems_folder(stems: Path, output: Path) -> None:
    """--stems names a folder (new or existing) we can create files in, and not the output itself."""
    import os

    from .files import same_file

    if stems.exists() and not stems.is_dir():
        raise OutputError(f"--stems {stems}: exists and is not a folder; give a new or existing folder for the stems")
    if same_file(stems, output):
        raise OutputError(f"--stems {stems}: is the audio output; give a folder for the stems")
    nearest = stems
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir() or not os.access(nearest, os.W_OK):
        raise OutputError(f"--stems {stems}: cannot create files under {nearest} (permission denied); choose another folder")


def _shift(doc: dict[str, Any], offset: float) -> None:
    """Move chunk and chapter times onto the output timeline (a music intro delays the speech)."""
    if not offset:
        return
    for row in doc["chunks"] + doc.get("chapters", []):
        for key in ("start", "end"):
            if key in row:
                row[key] = round(row[key] + offset, 3)


# --- streaming (`-o -`, the server) ----------------------------------------------------------------
def spoken(plan: Plan, audio: np.ndarray) -> np.ndarray:
    """A rendered chunk as it goes into the programme: edges trimmed and faded, long inner pauses shortened."""
    audio = fade_edges(trim_silence(audio, SAMPLE_RATE), SAMPLE_RATE)
    if plan.options.max_silence is not None:
        from .mixing import shorten_silences

        audio = shorten_silences(audio, SAMPLE_RATE, plan.options.max_silence)
    return audio


def speech_pieces(plan: Plan, entries: Iterable[tuple[int, Entry]]) -> Iterator[np.ndarray]:
    """The speech `render` writes before its finishing pass, piece by piece as chunks arrive in order (the gap
    before each chunk, then the chunk, then any closing pause), through the true-peak limiter so that streamed
    audio never clips either (its level stays as rendered: a programme level needs the whole programme)."""
    from .loudness import limit_stream

    def pieces() -> Iterator[np.ndarray]:
        for i, entry in entries:
            chunk = plan.chunks[i]
            heading = plan.script.segments[chunk.paragraph].heading
            yield silence(gap_before(plan.chunks[i - 1] if i else None, chunk, plan.options, heading), SAMPLE_RATE)
            yield spoken(plan, entry.audio)
        if plan.chunks:
            yield silence(sum(c.seconds for c in plan.chunks[-1].controls_after if c.kind == "pause"), SAMPLE_RATE)

    yield from limit_stream(pieces())


def stream(plan: Plan, cache: ChunkCache | None = None, jobs: int = 1,
           on_progress: Callable[[Progress], None] | None = None) -> Iterator[np.ndarray]:
    """Render a plan and yield its speech as each chunk finishes (no finishing pass: music and loudness need
    the whole programme); true peaks are limited to -1 dBTP as they pass (speech_pieces)."""
    from .takes import prepare

    cache = cache or ChunkCache(None)
    started = time.monotonic()
    ready = prepare(plan, cache, chunk_keys)  # kept takes, and the quality gate as `render` has it
    plan = ready.plan
    renderer = Renderer(plan, chunk_keys(plan), cache, jobs)
    renderer.takes = list(ready.takes or renderer.takes)
    if ready.gate is not None and ready.gate.mode in ("retake", "strict"):
        renderer.settle_after_batch()

    def entries() -> Iterator[tuple[int, Entry]]:
        for i, entry, hit in renderer:
            if ready.gate is not None:
                entry, hit, _ = ready.gate.settle(renderer, i, entry, hit)
            if on_progress:
                on_progress(Progress(i + 1, len(plan.chunks), time.monotonic() - started, plan.chunks[i], hit))
            yield i, entry

    yield from speech_pieces(plan, entries())
