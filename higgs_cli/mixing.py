"""Finishing the programme in bounded memory: silence shortening, music bed with ducking, programme gain (metering and limiting live in loudness.py)."""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .loudness import FLOOR_DB, Limiter, LoudnessMeter, _undb, db, measure_file
from .options import (
    DUCK_MAX_DB,
    LOUDNESS_PRESETS,
    LOUDNESS_RANGE,
    LOUDNESS_TOLERANCE,
    MUSIC_EDGE_MAX_SECONDS,
    MUSIC_GAIN_RANGE,
    MUSIC_LOOP_CROSSFADE,
    MUSIC_MAX_SECONDS,
    MUSIC_MIN_SECONDS,
    MUSIC_SILENT_DB,
    NUMERIC_PEAK_DB,
    SAFETY_PEAK_DB,
    SAMPLE_RATE,
    SILENCE_DB,
    FinishOptions,
    LoudnessPreset,
)

log = logging.getLogger(__name__)



class FinishError(UsageError):
    """A finishing option is out of range or unknown."""


class MusicError(FinishError):
    """A music file cannot be used as a bed."""


# --- options -----------------------------------------------------------------------------------


def resolve_loudness(value: str | float | None) -> LoudnessPreset | None:
    """A loudness preset from a name (`podcast`, `audiobook`, `broadcast`), a LUFS number, or None."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
        return None
    if isinstance(value, str) and value.strip().lower() in LOUDNESS_PRESETS:
        return LOUDNESS_PRESETS[value.strip().lower()]
    try:
        target = float(value)
    except ValueError:
        raise FinishError(f"unknown loudness {value!r}; use {', '.join(LOUDNESS_PRESETS)} or a number of LUFS such as -16") from None
    lo, hi = LOUDNESS_RANGE
    if not lo <= target <= hi:
        raise FinishError(f"loudness {target:g} LUFS is out of range; give a target between {lo:g} and {hi:g} LUFS (e.g. -16)")
    return LoudnessPreset(f"{target:g} LUFS", target, NUMERIC_PEAK_DB)


def _check_range(name: str, value: float, lo: float, hi: float, unit: str) -> None:
    if not (math.isfinite(value) and lo <= value <= hi):
        raise FinishError(f"{name} {value:g} {unit} is out of range; give a value between {lo:g} and {hi:g} {unit}")


def validate(options: FinishOptions) -> LoudnessPreset | None:
    """Check every finishing option before any work; returns the resolved loudness target."""
    _check_range("--music-gain", options.music_gain, *MUSIC_GAIN_RANGE, "dB")
    _check_range("--duck", options.duck, 0.0, DUCK_MAX_DB, "dB")
    _check_range("--music-intro", options.music_intro, 0.0, MUSIC_EDGE_MAX_SECONDS, "s")
    _check_range("--music-outro", options.music_outro, 0.0, MUSIC_EDGE_MAX_SECONDS, "s")
    _check_range("music fade", options.music_fade, 0.0, 30.0, "s")
    _check_range("duck attack", options.duck_attack, 0.0, 10.0, "s")
    _check_range("duck release", options.duck_release, 0.0, 10.0, "s")
    if options.block < 256:
        raise FinishError(f"block size {options.block} is too small; use at least 256 frames")
    if options.cover is not None:
        from .containers import cover_kind

        cover_kind(options.cover)
    return resolve_loudness(options.loudness)


# --- silences ----------------------------------------------------------------------------------


def _quiet_runs(audio: np.ndarray, rate: int, threshold_db: float) -> list[tuple[int, int]]:
    """(start, end) sample spans of consecutive 10 ms frames below `threshold_db`."""
    win = max(1, rate // 100)
    frames = len(audio) // win
    if frames == 0:
        return []
    energy = np.sqrt(np.mean(np.square(audio[: frames * win].reshape(frames, win), dtype=np.float64), axis=1) + 1e-20)
    quiet = np.concatenate([[False], 20 * np.log10(energy) < threshold_db, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    return [(int(s) * win, int(e) * win) for s, e in zip(edges[::2], edges[1::2])]


def shorten_silences(audio: np.ndarray, rate: int, max_silence_s: float, threshold_db: float = SILENCE_DB) -> np.ndarray:
    """Shorten every silence longer than `max_silence_s` to that length by cutting its middle (5 ms crossfade at the cut)."""
    if not max_silence_s > 0:
        raise FinishError(f"maximum silence {max_silence_s:g} s must be positive; give e.g. 1.0")
    keep = round(max_silence_s * rate)
    fade = max(1, min(rate // 200, keep // 4))
    pieces, pos = [], 0
    for start, end in _quiet_runs(audio, rate, threshold_db):
        if end - start <= keep:
            continue
        cut_from, cut_to = start + keep // 2, end - (keep - keep // 2)
        pieces.append(audio[pos:cut_from])
        pos = cut_to
    if not pieces:
        return audio
    pieces.append(audio[pos:])
    return _join_crossfaded(pieces, fade).astype(np.float32)


def _join_crossfaded(pieces: list[np.ndarray], fade: int) -> np.ndarray:
    out = pieces[0].astype(np.float32)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    for piece in pieces[1:]:
        n = min(fade, len(out), len(piece))
        if n == 0:
            out = np.concatenate([out, piece])
            continue
        r = ramp if n == fade else np.linspace(0.0, 1.0, n, dtype=np.float32)
        mixed = out[-n:] * (1 - r) + piece[:n] * r
        out = np.concatenate([out[:-n], mixed, piece[n:]])
    return out


# --- music -------------------------------------------------------------------------------------


class MusicSource:
    """One decoded music file at the programme rate that plays from its start and then loops with a crossfade."""

    def __init__(self, path: Path, rate: int):
        self.path = Path(path)
        audio = _load_music(self.path, rate)
        n = len(audio)
        x = min(round(MUSIC_LOOP_CROSSFADE * rate), n // 4)
        self._head = audio
        self._period = n - x
        tile = audio[: self._period].copy()
        if x > 0:
            phase = np.linspace(0.0, np.pi / 2, x, dtype=np.float32)
            tile[:x] = audio[:x] * np.sin(phase) + audio[self._period:] * np.cos(phase)
        self._tile = tile

    def samples(self, offset: int, count: int) -> np.ndarray:
        """`count` samples starting `offset` samples after the music began."""
        out = np.empty(count, np.float32)
        done = 0
        if offset < self._period:
            done = min(count, self._period - offset)
            out[:done] = self._head[offset: offset + done]
        while done < count:
            p = (offset + done) % self._period
            take = min(count - done, self._period - p)
            out[done: done + take] = self._tile[p: p + take]
            done += take
        return out


def check_music(path: Path | str, label: str = "--music") -> None:
    """Before any rendering: the music file exists and decodes as audio of at least MUSIC_MIN_SECONDS."""
    from .containers import ContainerError, audio_duration
    from .errors import RenderError

    path = Path(path)
    if not path.is_file():
        raise MusicError(f"{label} {path}: music file not found; check the name and folder")
    try:
        seconds = audio_duration(path)
    except (ContainerError, RenderError) as e:
        raise MusicError(f"{label} {path}: not a readable audio file; give a wav, flac, ogg, mp3 or m4a file") from e
    if seconds < MUSIC_MIN_SECONDS:
        raise MusicError(f"{label} {path}: music is {seconds:.2f} s long; give a file of at least {MUSIC_MIN_SECONDS:g} s (it loops)")


def _load_music(path: Path, rate: int) -> np.ndarray:
    from .containers import ContainerError, read_all

    try:
        audio = read_all(path, rate, MUSIC_MAX_SECONDS)
    except ContainerError as e:
        raise MusicError(f"music {e}") from e
    if len(audio) < MUSIC_MIN_SECONDS * rate:
        raise MusicError(f"{path}: music is {len(audio) / rate:.2f} s long; give a file of at least {MUSIC_MIN_SECONDS:g} s (it loops)")
    if db(float(np.max(np.abs(audio)))) < MUSIC_SILENT_DB:
        raise MusicError(f"{path}: music file is silent; give a file with audible music")
    return audio


@dataclass(frozen=True)
class _Segment:
    start: int  # absolute sample where this music starts
    end: int  # where it starts fading out
    fade_in: int
    fade_out: int
    source: MusicSource


class MusicBed:
    """The bed's raw samples (before gain and ducking) for any span, from cues `(sample, source or None)`."""

    def __init__(self, cues: Sequence[tuple[int, MusicSource | None]], total: int, fade: int):
        self.segments: list[_Segment] = []
        ordered = sorted(cues, key=lambda c: c[0])
        for i, (start, source) in enumerate(ordered):
            if source is None or start >= total:
                continue
            last = i + 1 == len(ordered)
            end = total if last else min(total, ordered[i + 1][0])
            length = end - start
            fin = min(fade, length // 2)
            fout = min(fade, length // 2) if last else min(fade, total - end)
            self.segments.append(_Segment(start, end - fout if last else end, fin, fout, source))

    def render(self, n0: int, n1: int) -> np.ndarray:
        out = np.zeros(n1 - n0, np.float32)
        for seg in self.segments:
            a, b = max(n0, seg.start), min(n1, seg.end + seg.fade_out)
            if a < b:
                out[a - n0: b - n0] += seg.source.samples(a - seg.start, b - a) * _fades(seg, a, b)
        return out


def _fades(seg: _Segment, a: int, b: int) -> np.ndarray:
    """Equal-power fade-in and fade-out envelope of one segment over samples [a, b)."""
    env = np.ones(b - a, np.float32)
    for lo, length, curve in ((seg.start, seg.fade_in, np.sin), (seg.end, seg.fade_out, np.cos)):
        x0, x1 = max(a, lo), min(b, lo + length)
        if length and x1 > x0:
            env[x0 - a: x1 - a] *= curve(np.pi / 2 * (np.arange(x0, x1) - lo) / length).astype(np.float32)
    return env


class DuckEnvelope:
    """The bed's gain in dB per sample: `gain` in the clear, `gain - depth` under speech, with smooth attack (ahead of speech) and release."""

    def __init__(self, regions: Sequence[tuple[int, int]], gain_db: float, depth_db: float, attack: int, release: int):
        spans = sorted((int(s), int(e)) for s, e in regions if e > s)
        self.starts = [s for s, _ in spans]
        self.ends = list(np.maximum.accumulate([e for _, e in spans])) if spans else []
        self.spans = spans
        self.gain, self.depth, self.attack, self.release = gain_db, depth_db, max(1, attack), max(1, release)

    def duck_amount(self, n0: int, n1: int) -> np.ndarray:
        """0 in the clear, 1 under speech, raised-cosine ramps between."""
        amount = np.zeros(n1 - n0)
        lo = bisect.bisect_right(self.ends, n0 - self.release)
        hi = bisect.bisect_left(self.starts, n1 + self.attack)
        for s, e in self.spans[lo:hi]:
            amount[max(s, n0) - n0: max(min(e, n1) - n0, 0)] = 1.0
            for x0, x1, first, step in ((s - self.attack, s, 0.0, 1 / self.attack), (e, e + self.release, 1.0, -1 / self.release)):
                a, b = max(x0, n0), min(x1, n1)
                if b > a:
                    ramp = first + (np.arange(a, b) - x0) * step
                    np.maximum(amount[a - n0: b - n0], ramp, out=amount[a - n0: b - n0])
        return 0.5 - 0.5 * np.cos(np.pi * amount)

    def gain_db(self, n0: int, n1: int) -> np.ndarray:
        return self.gain - self.depth * self.duck_amount(n0, n1)

    def gains(self, n0: int, n1: int) -> np.ndarray:
        return np.power(10.0, self.gain_db(n0, n1) / 20.0).astype(np.float32)


# --- the programme -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Programme:
    """Everything one pass over the finished timeline needs (sample units, output timeline)."""

    speech: Path
    offset: int  # intro: speech starts this many samples into the output
    speech_frames: int
    total: int
    bed: MusicBed | None
    duck: DuckEnvelope
    block: int

    def blocks(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(start, speech, bed) blocks covering the whole output; the bed already carries gain and ducking."""
        import soundfile as sf

        with sf.SoundFile(str(self.speech)) as f:
            for n0 in range(0, self.total, self.block):
                n1 = min(self.total, n0 + self.block)
                speech = np.zeros(n1 - n0, np.float32)
                a, b = max(n0, self.offset), min(n1, self.offset + self.speech_frames)
                if b > a:
                    speech[a - n0: b - n0] = f.read(b - a, dtype="float32", always_2d=True).mean(axis=1)
                bed = self.bed.render(n0, n1) * self.duck.gains(n0, n1) if self.bed else np.zeros_like(speech)
                yield n0, speech, bed

    def limited(self, gain_db: float, ceiling_db: float) -> Iterator[np.ndarray]:
        """Rows (mix, speech, bed) after programme gain and the true-peak limiter, block by block."""
        limiter = Limiter(SAMPLE_RATE, ceiling_db, 3)
        g = np.float32(_undb(gain_db))
        for _, speech, bed in self.blocks():
            out = limiter.process(np.stack([speech + bed, speech, bed]) * g)
            if out.shape[1]:
                yield out
        yield limiter.flush()


def _plan(speech: Path, rate: int, speech_regions: Sequence[tuple[float, float, str]], music_cues: Sequence[tuple[float, Path | str | None]],
          options: FinishOptions) -> _Programme:
    import soundfile as sf

    if rate != SAMPLE_RATE:
        raise FinishError(f"speech is at {rate} Hz; finishing works at {SAMPLE_RATE} Hz (resample with higgs_cli.audio.resample)")
    info = sf.info(str(speech))
    if info.samplerate != rate:
        raise FinishError(f"{speech}: is at {info.samplerate} Hz, not {rate}; render the speech track at {rate} Hz")
    music = any(p is not None for _, p in music_cues)
    offset = round(options.music_intro * rate) if music else 0
    total = offset + info.frames + (round(options.music_outro * rate) if music else 0)
    regions = [(round(s * rate) + offset, round(e * rate) + offset) for s, e, _ in speech_regions]
    duck = DuckEnvelope(regions, options.music_gain, options.duck, round(options.duck_attack * rate), round(options.duck_release * rate))
    bed = _music_bed(music_cues, rate, offset, total, options) if music else None
    return _Programme(Path(speech), offset, info.frames, total, bed, duck, options.block)


def _music_bed(music_cues: Sequence[tuple[float, Path | str | None]], rate: int, offset: int, total: int, options: FinishOptions) -> MusicBed:
    """Cue times are on the speech timeline; a cue at 0 starts with the intro, the others move with the speech."""
    sources: dict[Path, MusicSource] = {}
    cues: list[tuple[int, MusicSource | None]] = []
    for t, path in music_cues:
        if not (math.isfinite(t) and t >= 0):
            raise MusicError(f"music cue at {t} s is invalid; cue times must be zero or positive seconds")
        source = None
        if path is not None:
            key = Path(path)
            source = sources.get(key) or sources.setdefault(key, MusicSource(key, rate))
        cues.append((0 if t == 0 else round(t * rate) + offset, source))
    return MusicBed(cues, total, round(options.music_fade * rate))


def _programme_gain(programme: _Programme, preset: LoudnessPreset | None) -> tuple[float, float, float]:
    """(level before gain, true peak before gain in dBTP, gain in dB that brings the mix to the preset's target)."""
    if preset is None:
        return FLOOR_DB, 0.0, 0.0
    meter = LoudnessMeter(SAMPLE_RATE)
    for _, speech, bed in programme.blocks():
        meter.add(speech + bed)
    meter._flush_peak()
    level, peak = _level(meter, preset), db(meter.true_peak)
    if level <= FLOOR_DB:
        log.warning("programme is silent; loudness normalisation skipped")
        return level, peak, 0.0
    return level, peak, preset.target - level


def _level(meter: LoudnessMeter, preset: LoudnessPreset) -> float:
    if preset.measure == "rms":
        return db(math.sqrt(meter.sum_squares / max(1, meter.frames)))
    return meter.integrated()


def _settle_gain(programme: _Programme, preset: LoudnessPreset, gain_db: float, ceiling_db: float) -> float:
    """Correct the gain for what the limiter took away, re-measuring until within LOUDNESS_TOLERANCE (at most 3 passes)."""
    for _ in range(3):
        meter = LoudnessMeter(SAMPLE_RATE)
        for rows in programme.limited(gain_db, ceiling_db):
            meter.add(rows[0])
        error = preset.target - _level(meter, preset)
        if abs(error) <= LOUDNESS_TOLERANCE:
            break
        gain_db += error
    return gain_db


LOSSY_SUFFIXES = (".mp3", ".ogg", ".opus", ".m4a", ".m4b")
LOSSY_PEAK_MARGIN = 0.5  # dB of extra headroom: lossy encoders overshoot the limiter's ceiling


def finish(speech: Path, out: Path, *, rate: int = SAMPLE_RATE, speech_regions: Sequence[tuple[float, float, str]] = (),
           music_cues: Sequence[tuple[float, Path | str | None]] = (), options: FinishOptions | None = None,
           chapters: Sequence[tuple[str, float, float]] | None = None, stems: Path | None = None) -> dict[str, Any]:
    """Mix the raw speech wav with its music bed, normalise programme loudness, limit true peaks and write `out` atomically.

    Streams in `options.block` frames: one pass measures the mix, the limiter may take one to three more to
    settle the loudness, one writes the output (and stems), and a last one measures what was written.
    Times in the result (and `offset`, the intro length) are on the output timeline.
    """
    from .containers import check_chapters, check_output

    options = options or FinishOptions()
    preset = validate(options)
    check_output(out)
    chapter_list = check_chapters(chapters or [])
    programme = _plan(Path(speech), rate, speech_regions, music_cues, options)
    ceiling = (preset.peak_db if preset else SAFETY_PEAK_DB) - (LOSSY_PEAK_MARGIN if out.suffix.lower() in LOSSY_SUFFIXES else 0.0)
    level, peak, gain = _programme_gain(programme, preset)
    if preset is not None and gain and peak + gain > ceiling - 0.1:
        gain = _settle_gain(programme, preset, gain, ceiling)
    acx = preset is not None and preset.measure == "rms"
    meter = None if out.suffix.lower() in LOSSY_SUFFIXES else LoudnessMeter(SAMPLE_RATE)
    music = _write(programme, out, gain, ceiling, options, chapter_list, stems, speech_regions, meter)
    # lossless output is measured as it is written; lossy output is decoded and measured as a listener gets it
    measured = {"duration": round(meter.frames / SAMPLE_RATE, 3), **meter.report(acx)} if meter else measure_file(out, options.block, acx=acx)
    return {
        "output": str(out), "duration": measured["duration"], "offset": round(programme.offset / rate, 3),
        "loudness": {"preset": preset.name if preset else None, "target": preset.target if preset else None,
                     "measure": preset.measure if preset else None, "ceiling_dbtp": round(ceiling, 2),
                     "before": round(level, 2) if preset else None, "gain_db": round(gain, 2),
                     **{k: v for k, v in measured.items() if k != "duration"}},
        "music": music,
        "stems": music.pop("stems", None) if music else _stem_paths(stems, speech_regions),
    }


def _stem_paths(stems: Path | None, speech_regions: Sequence[tuple[float, float, str]]) -> dict[str, str] | None:
    from .stems import stem_name

    if stems is None:
        return None
    return {stem_name(s): str(Path(stems) / f"{stem_name(s)}.wav") for s in _speakers(speech_regions)}


def _speakers(speech_regions: Sequence[tuple[float, float, str]]) -> list[str]:
    return list(dict.fromkeys(spk for _, _, spk in sorted(speech_regions))) or ["speech"]


class _BedStats:
    """Level of the finished bed under speech and in the clear, for the manifest."""

    def __init__(self) -> None:
        self.under = [0.0, 0]
        self.clear = [0.0, 0]

    def add(self, bed: np.ndarray, amount: np.ndarray) -> None:
        for acc, mask in ((self.under, amount >= 0.999), (self.clear, amount <= 0.001)):
            acc[0] += float(np.sum(np.square(bed[mask], dtype=np.float64)))
            acc[1] += int(mask.sum())

    def report(self) -> dict[str, float | None]:
        def level(acc: list) -> float | None:
            return round(db(math.sqrt(acc[0] / acc[1])), 2) if acc[1] else None

        return {"under_speech_db": level(self.under), "clear_db": level(self.clear)}


def _write(programme: _Programme, out: Path, gain: float, ceiling: float, options: FinishOptions, chapters: list,
           stems: Path | None, speech_regions: Sequence[tuple[float, float, str]], meter: LoudnessMeter | None) -> dict[str, Any] | None:
    """The output pass: limited mix to `out`, and the same gain on every stem so the stems sum to the output."""
    from contextlib import ExitStack

    from .stems import StemWriter, split_speech

    speakers = _speakers(speech_regions)
    ordered = sorted(speech_regions)
    starts = np.array([round(s * SAMPLE_RATE) + programme.offset for s, _, _ in ordered], dtype=np.int64)
    owner = np.array([speakers.index(spk) for _, _, spk in ordered], dtype=np.int64)
    stats = _BedStats()
    with ExitStack() as stack:
        writer = stack.enter_context(_output(out, options, chapters))
        stem_writer = stack.enter_context(StemWriter(stems, speakers, SAMPLE_RATE, programme.bed is not None)) if stems else None
        n = 0
        for rows in programme.limited(gain, ceiling):
            writer.write(rows[0])
            if meter is not None:
                meter.add(np.clip(rows[0], -1.0, 1.0))
            if stem_writer:
                stem_writer.write(split_speech(rows[1], n, starts, owner, len(speakers)) + [rows[2]])
            if programme.bed is not None:
                stats.add(rows[2], programme.duck.duck_amount(n, n + rows.shape[1]))
            n += rows.shape[1]
    if programme.bed is None:
        return None
    report: dict[str, Any] = {"gain_db": options.music_gain, "duck_db": options.duck, **stats.report(), "curve": _gain_curve(programme, gain)}
    if stem_writer:
        report["stems"] = stem_writer.paths()
    return report


def _gain_curve(programme: _Programme, gain: float, points: int = 2000) -> dict[str, Any]:
    """The bed's gain in dB (ducking plus programme gain, before limiting) sampled evenly, for inspection plots."""
    step = max(SAMPLE_RATE // 10, -(-programme.total // points))
    pos = np.arange(0, programme.total, step)
    values = [round(float(programme.duck.gain_db(int(p), int(p) + 1)[0]) + gain, 2) for p in pos]
    return {"step": round(step / SAMPLE_RATE, 4), "db": values}


def _output(out: Path, options: FinishOptions, chapters: list) -> Any:
    """A context manager giving an `AudioWriter`-like sink for `out`; m4a/m4b go through a temp wav and ffmpeg."""
    from contextlib import contextmanager

    from .audio import AudioWriter
    from .containers import book_metadata, encode, is_container

    @contextmanager
    def sink() -> Iterator[Any]:
        if not is_container(out):
            with AudioWriter(out, SAMPLE_RATE) as writer:
                yield writer
            return
        from .files import temp_path

        tmp = temp_path(out, ".wav")
        try:
            with AudioWriter(Path(tmp), SAMPLE_RATE) as writer:
                yield writer
            meta = book_metadata(options.title, options.author, out.suffix.lower() == ".m4b")
            encode(Path(tmp), out, metadata=meta, chapters=chapters, cover=options.cover, bitrate=options.bitrate)
        finally:
            Path(tmp).unlink(missing_ok=True)

    return sink()
