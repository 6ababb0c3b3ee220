"""Audio I/O and the one convention: float32 mono `(frames,)` numpy arrays paired with a sample rate."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np

from .errors import OutputError, UsageError
from .options import FADE_SECONDS, OUTPUT_FORMATS, SILENCE_DB


class AudioReadError(UsageError):
    """An input audio file is missing, corrupt or in an unreadable format."""


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Read any soundfile-readable file as float32 mono."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except FileNotFoundError as e:
        raise AudioReadError(f"{path}: audio file not found; check the path") from e
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioReadError(f"{path}: not a readable audio file ({e}); give a wav, flac, ogg or mp3 clip") from e
    if data.size == 0:
        raise AudioReadError(f"{path}: audio file holds no samples; record a longer clip")
    return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32), int(rate)


def resample(audio: np.ndarray, rate_in: float, rate_out: int) -> np.ndarray:
    """High-quality resampling with soxr; a no-op when the rates agree."""
    if abs(rate_in - rate_out) < 1e-6 or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(audio, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(max(0, round(seconds * rate)), dtype=np.float32)


def trim_silence(audio: np.ndarray, rate: int, threshold_db: float = SILENCE_DB, keep: float = 0.04) -> np.ndarray:
    """Cut leading and trailing silence, keeping `keep` seconds of margin so onsets stay soft."""
    if audio.size == 0:
        return audio
    win = max(1, rate // 100)  # 10 ms frames
    frames = len(audio) // win
    if frames == 0:
        return audio
    energy = np.sqrt(np.mean(audio[: frames * win].reshape(frames, win) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(energy) > threshold_db)
    if loud.size == 0:
        return audio[:0]
    margin = round(keep * rate)
    start = max(0, loud[0] * win - margin)
    end = min(len(audio), (loud[-1] + 1) * win + margin)
    return audio[start:end]


def fade_edges(audio: np.ndarray, rate: int, seconds: float = FADE_SECONDS) -> np.ndarray:
    """Raised-cosine fade in and out so that a join with silence or another chunk never clicks."""
    n = min(round(seconds * rate), len(audio) // 2)
    if n < 2:
        return audio
    out = audio.copy()
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def output_format(path: Path) -> tuple[str, str]:
    """The soundfile (format, subtype) for an output path, chosen by its extension."""
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: unsupported output format {path.suffix or '(none)'!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def check_writable(path: Path) -> None:
    """Fail before any synthesis when the output could not be written."""
    output_format(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name such as {path / 'out.wav'}")
    if not parent.is_dir():
        raise OutputError(f"{path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"{path}: cannot write here (permission denied); choose another output path")


class AudioWriter:
    """Streams float32 mono audio to a temp file beside `path`; renamed into place only on success."""

    def __init__(self, path: Path, rate: int, subtype: str | None = None):
        self.path, self.rate, self.frames, self.subtype = path, rate, 0, subtype
        self._tmp: str | None = None
        self._file = None

    def __enter__(self) -> AudioWriter:
        import soundfile as sf

        fmt, subtype = output_format(self.path)
        subtype = self.subtype or subtype
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent or ".")
        os.close(fd)
        self._file = sf.SoundFile(self._tmp, "w", samplerate=self.rate, channels=1, format=fmt, subtype=subtype)
        return self

    def write(self, audio: np.ndarray) -> None:
        if audio.size:
            self._file.write(np.clip(audio, -1.0, 1.0))
            self.frames += len(audio)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._file.close()
        finally:
            if exc_type is None:
                os.chmod(self._tmp, 0o644)
                os.replace(self._tmp, self.path)
            else:
                Path(self._tmp).unlink(missing_ok=True)


def write_audio(path: Path, audio: np.ndarray, rate: int) -> None:
    """Write a whole clip atomically."""
    with AudioWriter(path, rate) as w:
        w.write(audio)
