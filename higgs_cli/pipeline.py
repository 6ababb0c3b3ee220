"""Orchestration: script -> plan (chunks, cast, seeds) -> rendered chunks -> one output file + manifest."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import engines
from .audio import AudioWriter, check_writable, fade_edges, resample, silence, trim_silence
from .chunking import Chunk, chunk_script
from .options import SAMPLE_RATE, RenderOptions
from .transcript import Script
from .voices import Voice, cast


@dataclass(frozen=True)
class Plan:
    """Everything decided before synthesis; `--dry-run` prints it."""

    script: Script
    chunks: tuple[Chunk, ...]
    cast: dict[str, Voice]
    engine: str
    seeds: tuple[int, ...]
    options: RenderOptions


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    elapsed: float
    chunk: Chunk


def chunk_seed(base: int, index: int) -> int:
    """A distinct, recorded seed per chunk so any chunk can be regenerated on its own."""
    digest = hashlib.sha256(f"higgs-chunk:{base}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def make_plan(script: Script, options: RenderOptions, engine: str) -> Plan:
    chunks = tuple(chunk_script(script, options.chunk, options.max_words))
    voices = cast(script.speakers, options.voices, options.default_voice, options.distinct)
    seeds = tuple(chunk_seed(options.seed, c.index) for c in chunks)
    return Plan(script, chunks, voices, engine, seeds, options)


def pause_before(prev: Chunk | None, chunk: Chunk, options: RenderOptions) -> float:
    if prev is None:
        return 0.0
    if prev.turn != chunk.turn:
        return options.pause_turn
    if prev.paragraph != chunk.paragraph:
        return options.pause_paragraph
    return options.pause_sentence


def manifest(plan: Plan, output: Path | None, timings: list[tuple[float, float]] | None = None,
             duration: float | None = None, chunk_info: list[dict] | None = None) -> dict[str, Any]:
    """The machine-readable account of a job; without timings it is the dry-run plan."""
    cls = engines.engine_class(plan.engine)
    doc: dict[str, Any] = {
        "output": str(output) if output else None,
        "sample_rate": SAMPLE_RATE,
        "engine": plan.engine,
        "reproducible": cls.reproducible,
        "chunking": {"method": plan.options.chunk, "max_words": plan.options.max_words},
        "seed": plan.options.seed,
        "words": sum(c.words for c in plan.chunks),
        "speakers": {spk: {"voice": v.name, "source": v.source, "description": v.description,
                           "settings": v.settings(plan.engine)} for spk, v in plan.cast.items()},
    }
    if duration is not None:
        doc["duration"] = round(duration, 3)
    chunks = []
    for i, chunk in enumerate(plan.chunks):
        row = {"index": chunk.index, "speaker": chunk.speaker, "voice": plan.cast[chunk.speaker].name,
               "text": chunk.text, "words": chunk.words, "line": chunk.line, "seed": plan.seeds[i]}
        if timings is not None:
            row["start"], row["end"] = round(timings[i][0], 3), round(timings[i][1], 3)
        if chunk_info and chunk_info[i]:
            row.update(chunk_info[i])
        chunks.append(row)
    doc["chunks"] = chunks
    preview = None if timings is not None else cls.preview(plan)
    if preview:
        doc["engine_plan"] = preview
    return doc


def render(plan: Plan, output: Path, on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Synthesise every chunk in order and stream the joined audio to `output` (atomically)."""
    check_writable(output)
    engine = engines.create(plan.engine, plan.options.higgs)
    started = time.monotonic()
    timings: list[tuple[float, float]] = []
    infos: list[dict] = []
    try:
        engine.begin(plan)
        with AudioWriter(output, SAMPLE_RATE) as writer:
            prev = None
            for i, chunk in enumerate(plan.chunks):
                request = engines.ChunkRequest(chunk.index, chunk.speaker, chunk.text, plan.cast[chunk.speaker], plan.seeds[i])
                result = engine.synthesize(request)
                audio = resample(result.audio, engine.sample_rate, SAMPLE_RATE)
                audio = fade_edges(trim_silence(audio, SAMPLE_RATE), SAMPLE_RATE)
                writer.write(silence(pause_before(prev, chunk, plan.options), SAMPLE_RATE))
                start = writer.frames / SAMPLE_RATE
                writer.write(audio)
                timings.append((start, writer.frames / SAMPLE_RATE))
                infos.append(result.info)
                prev = chunk
                if on_progress:
                    on_progress(Progress(i + 1, len(plan.chunks), time.monotonic() - started, chunk))
            duration = writer.frames / SAMPLE_RATE
    finally:
        engine.close()
    return manifest(plan, output, timings, duration, infos)
