"""ffmpeg-backed formats: streaming decode of any audio, m4a/m4b (AAC) with chapters, metadata and cover art, and `bind`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import AudioWriter, check_output_path, check_writable, decoder_quiet
from .errors import OutputError, RenderError, UsageError
from .interrupts import heavy_import
from .options import AAC_BITRATE, BLOCK_FRAMES, CONTAINER_FORMATS, SAMPLE_RATE


class ContainerError(UsageError):
    """A container output cannot be made as asked (bad chapters, cover, inputs)."""


class FfmpegMissing(ContainerError):
    """No ffmpeg binary is available for a format that needs it."""


@dataclass(frozen=True)
class Chapter:
    title: str
    start: float  # seconds
    end: float


_FFMPEG_HINT = "install it with `.venv/bin/pip install imageio-ffmpeg` or put ffmpeg on PATH"


def ffmpeg_exe() -> str:
    """The ffmpeg binary: imageio-ffmpeg's bundled one, else `ffmpeg` on PATH."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        if exe and Path(exe).is_file():
            return exe
    except (ImportError, RuntimeError, OSError):
        pass
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise FfmpegMissing(f"this format needs ffmpeg, which was not found; {_FFMPEG_HINT}")
    return exe


def is_container(path: Path) -> bool:
    """Whether `path` is written through ffmpeg (m4a/m4b) rather than soundfile."""
    return path.suffix.lower() in CONTAINER_FORMATS


def check_output(path: Path) -> None:
    """Fail before any work when `path` could not be written (soundfile or container formats)."""
    if not is_container(path):
        check_writable(path)
        return
    check_output_path(path, "book.m4b")
    ffmpeg_exe()
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{path}: cannot write here (permission denied); choose another output path")


def _run(args: list[str], what: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *args], input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["(no message)"])[-1]
        raise RenderError(f"ffmpeg failed to {what}: {last}; check the input files")
    return proc


# --- decoding ----------------------------------------------------------------------------------


def _soundfile_info(path: Path) -> Any | None:
    import soundfile as sf

    try:
        with decoder_quiet(path):
            return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None


def audio_duration(path: Path) -> float:
    """Duration in seconds of any audio file soundfile or ffmpeg reads."""
    info = _soundfile_info(path)
    if info is not None and info.frames > 0:
        return info.frames / info.samplerate
    proc = _run(["-i", str(path), "-f", "null", "-"], f"read {path}")
    times = re.findall(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)", proc.stderr.decode(errors="replace"))
    if not times:
        raise ContainerError(f"{path}: not a readable audio file; give a wav, flac, ogg, mp3 or m4a file")
    h, m, s = times[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def check_audio_input(path: Path) -> None:
    """An input that must be audio (a chapter to bind) is a file soundfile or ffmpeg decodes."""
    if not Path(path).is_file():
        raise ContainerError(f"{path}: audio file not found; check the path")
    try:
        seconds = audio_duration(path)
    except (ContainerError, RenderError) as e:
        raise ContainerError(f"{path}: not a readable audio file; give chapter audio (wav, flac, ogg, mp3, m4a)") from e
    if seconds <= 0:
        raise ContainerError(f"{path}: holds no audio; remove it from the list")


def read_blocks(path: Path, rate: int = SAMPLE_RATE, block: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Stream any audio file as float32 mono blocks at `rate` (soundfile + soxr, else an ffmpeg pipe)."""
    if not Path(path).is_file():
        raise ContainerError(f"{path}: audio file not found; check the path")
    info = _soundfile_info(path)
    if info is not None:
        yield from _soundfile_blocks(path, info.samplerate, rate, block)
    else:
        yield from _ffmpeg_blocks(path, rate, block)


def _soundfile_blocks(path: Path, source_rate: int, rate: int, block: int) -> Iterator[np.ndarray]:
    import soundfile as sf

    soxr = heavy_import("soxr")
    stream = None if source_rate == rate else soxr.ResampleStream(source_rate, rate, 1, dtype="float32", quality="HQ")
    with decoder_quiet(path):
        f = sf.SoundFile(str(path))
    with f:
        while True:
            with decoder_quiet(path):
                data = f.read(block, dtype="float32", always_2d=True)
            last = len(data) < block
            mono = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
            out = mono if stream is None else stream.resample_chunk(mono, last=last)
            if out.size:
                yield out
            if last:
                return


def _ffmpeg_blocks(path: Path, rate: int, block: int) -> Iterator[np.ndarray]:
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = 0
    try:
        while chunk := proc.stdout.read(block * 4):
            got += len(chunk) // 4
            yield np.frombuffer(chunk[: len(chunk) // 4 * 4], dtype=np.float32).copy()
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        proc.wait()
    if proc.returncode != 0 or got == 0:
        why = err.splitlines()[-1] if err else "no audio stream"
        raise ContainerError(f"{path}: not a readable audio file ({why}); give a wav, flac, ogg, mp3 or m4a file")


def read_all(path: Path, rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """A whole (short) file as float32 mono at `rate`, optionally only its first `max_seconds`."""
    limit = None if max_seconds is None else round(max_seconds * rate)
    parts, total = [], 0
    for block in read_blocks(path, rate):
        parts.append(block)
        total += len(block)
        if limit is not None and total >= limit:
            break
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return audio if limit is None else audio[:limit]


# --- encoding ----------------------------------------------------------------------------------


def check_chapters(chapters: Sequence[Chapter | tuple[str, float, float]]) -> list[Chapter]:
    """Chapters as `Chapter`s, each with a title and a positive span, in order."""
    out: list[Chapter] = []
    for i, ch in enumerate(chapters, 1):
        title, start, end = (ch.title, ch.start, ch.end) if isinstance(ch, Chapter) else ch
        if not str(title or "").strip():
            raise ContainerError(f"chapter {i} has no title; give every chapter some text (e.g. 'Chapter {i}')")
        if not end > start >= (out[-1].start if out else 0.0):
            raise ContainerError(f"chapter {i} ({title!r}) spans {start:.3f}-{end:.3f} s; chapters must be in order and end after they start")
        out.append(Chapter(" ".join(str(title).split()), float(start), float(end)))
    return out


def cover_kind(path: Path) -> str:
    """'jpeg' or 'png' for a cover image, judged by its content rather than its name."""
    try:
        head = Path(path).read_bytes()[:8]
    except OSError as e:
        raise ContainerError(f"{path}: cover image cannot be read ({e.strerror}); check the path") from e
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    raise ContainerError(f"{path}: cover is not a JPEG or PNG image; convert it to .jpg or .png first")


def _escape(value: str) -> str:
    return re.sub(r"([=;#\\\n])", r"\\\1", value)


def ffmetadata(metadata: dict[str, str], chapters: Sequence[Chapter]) -> str:
    """The text of an FFMETADATA1 file carrying tags and chapters (millisecond time base)."""
    lines = [";FFMETADATA1"] + [f"{k}={_escape(v)}" for k, v in metadata.items() if v]
    for ch in chapters:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(ch.start * 1000)}", f"END={round(ch.end * 1000)}", f"title={_escape(ch.title)}"]
    return "\n".join(lines) + "\n"


def book_metadata(title: str | None, author: str | None, audiobook: bool) -> dict[str, str]:
    tags = {"title": title or "", "album": title or "", "artist": author or "", "album_artist": author or ""}
    if audiobook:
        tags["genre"] = "Audiobook"
    return {k: v for k, v in tags.items() if v}


def encode(wav: Path, out: Path, *, metadata: dict[str, str] | None = None, chapters: Sequence[Chapter] = (),
           cover: Path | None = None, bitrate: str = AAC_BITRATE) -> None:
    """Encode `wav` to AAC in an m4a/m4b at `out`, atomically, with tags, chapters and cover art."""
    from .files import sweep_stale, temp_path

    kind = cover_kind(cover) if cover else None
    sweep_stale(out)
    tmp, meta_path = str(temp_path(out, ".partial")), str(temp_path(out, ".ffmeta"))
    try:
        Path(meta_path).write_text(ffmetadata(metadata or {}, chapters), encoding="utf-8")
        args = ["-loglevel", "error", "-y", "-i", str(wav), "-f", "ffmetadata", "-i", meta_path]
        if kind:
            args += ["-i", str(cover)]
        args += ["-map", "0:a", "-map_metadata", "1", "-map_chapters", "1"]
        if kind:
            args += ["-map", "2:v", "-c:v", "copy", "-disposition:v:0", "attached_pic"]
        args += ["-c:a", "aac", "-b:a", bitrate, "-movflags", "+faststart", "-f", "ipod" if out.suffix.lower() == ".m4b" else "mp4", tmp]
        _run(args, f"write {out}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
        Path(meta_path).unlink(missing_ok=True)


def probe(path: Path) -> dict[str, Any]:
    """Tags, chapters, cover presence and duration of a media file, read back through ffmpeg."""
    meta = _run(["-loglevel", "error", "-i", str(path), "-f", "ffmetadata", "-"], f"read {path}").stdout.decode(errors="replace")
    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, check=False).stderr.decode(errors="replace")
    tags: dict[str, str] = {}
    chapters: list[dict[str, Any]] = []
    for line in meta.splitlines()[1:]:
        if line == "[CHAPTER]":
            chapters.append({})
        elif "=" in line:
            key, value = line.split("=", 1)
            (chapters[-1] if chapters else tags)[key.lower()] = value.replace("\\", "")
    dur = re.search(r"Duration: (\d+):(\d+):(\d+\.\d+)", info)
    return {
        "duration": int(dur[1]) * 3600 + int(dur[2]) * 60 + float(dur[3]) if dur else None,
        "tags": tags,
        "chapters": [{"title": c.get("title", ""), "start": int(c["start"]) * _timebase(c), "end": int(c["end"]) * _timebase(c)} for c in chapters],
        "cover": "(attached pic)" in info,
    }


def _timebase(chapter: dict[str, str]) -> float:
    num, den = chapter.get("timebase", "1/1000").split("/")
    return int(num) / int(den)


# --- bind --------------------------------------------------------------------------------------


def bind(inputs: list[Path], out: Path, title: str | None = None, author: str | None = None, cover: Path | None = None,
         chapter_titles: list[str] | None = None, bitrate: str = AAC_BITRATE) -> dict[str, Any]:
    """Join chapter files into one audiobook (m4b/m4a; any other format gets audio only) with a chapter per input."""
    if not inputs:
        raise ContainerError("bind needs at least one input file; give chapter audio files")
    titles = list(chapter_titles) if chapter_titles else [Path(p).stem.replace("_", " ") for p in inputs]
    if len(titles) != len(inputs):
        raise ContainerError(f"{len(titles)} chapter titles for {len(inputs)} files; give one title per input file")
    check_chapters([(t, i, i + 1) for i, t in enumerate(titles)])
    for p in inputs:
        if not Path(p).is_file():
            raise ContainerError(f"{p}: input file not found; check the path")
    if cover is not None:
        cover_kind(cover)
    check_output(out)
    return _bind(inputs, out, titles, title, author, cover, bitrate)


def _bind(inputs: list[Path], out: Path, titles: list[str], title: str | None, author: str | None, cover: Path | None, bitrate: str) -> dict[str, Any]:
    container = is_container(out)
    if container:
        from .files import temp_path

        target = temp_path(out, ".wav")
    else:
        target = out
    try:
        spans = _concatenate(inputs, target)
        chapters = [Chapter(t, a, b) for t, (a, b) in zip(titles, spans)]
        if container:
            encode(target, out, metadata=book_metadata(title, author, out.suffix.lower() == ".m4b"), chapters=chapters, cover=cover, bitrate=bitrate)
    finally:
        if container:
            target.unlink(missing_ok=True)
    return {"output": str(out), "duration": round(spans[-1][1], 3), "title": title, "author": author,
            "cover": str(cover) if cover else None,
            "chapters": [{"title": c.title, "start": round(c.start, 3), "end": round(c.end, 3)} for c in chapters]}


def _concatenate(inputs: list[Path], target: Path) -> list[tuple[float, float]]:
    spans = []
    with AudioWriter(target, SAMPLE_RATE) as writer:
        for path in inputs:
            start = writer.frames
            for block in read_blocks(path, SAMPLE_RATE):
                writer.write(block)
            if writer.frames == start:
                raise ContainerError(f"{path}: holds no audio; remove it from the list")
            spans.append((start / SAMPLE_RATE, writer.frames / SAMPLE_RATE))
    return spans
