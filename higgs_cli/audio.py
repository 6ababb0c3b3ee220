"""Audio I/O and the one convention: float32 mono `(frames,)` numpy arrays paired with a sample rate."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import numpy as np

from .errors import OutputError, UsageError
from .interrupts import heavy_import
from .options import FADE_SECONDS, OUTPUT_FORMATS, SILENCE_DB

_QUIET = {"lock": threading.Lock(), "depth": 0, "saved": -1}


@contextmanager
def decoder_quiet(path: Path | str) -> Iterator[None]:
    """Hide libmpg123's C-level stderr chatter ("error: part2_3_length ... too large") while an mp3 is opened or read.

    libsndfile's mp3 decoder prints those lines to file descriptor 2 while decoding files that play correctly.
    Only mp3 reads are wrapped, one short call at a time, so our own messages are never held back.
    """
    if Path(path).suffix.lower() != ".mp3":
        yield
        return
    with _QUIET["lock"]:
        if _QUIET["depth"] == 0:
            sys.stderr.flush()
            _QUIET["saved"] = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        _QUIET["depth"] += 1
    try:
        yield
    finally:
        with _QUIET["lock"]:
            _QUIET["depth"] -= 1
            if _QUIET["depth"] == 0:
                os.dup2(_QUIET["saved"], 2)
                os.close(_QUIET["saved"])


class AudioReadError(UsageError):
    """An input audio file is missing, corrupt or in an unreadable format."""


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Read any soundfile-readable file as float32 mono."""
    import soundfile as sf

    if not Path(path).exists():  # libsndfile reports a missing file as "System error"
        raise AudioReadError(f"{path}: audio file not found; check the path")
    if Path(path).is_dir():
        raise AudioReadError(f"{path}: is a folder; give an audio file")
    try:
        with decoder_quiet(path):
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
    soxr = heavy_import("soxr")  # a nanobind extension: a Ctrl-C during its import must not abort

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


def check_output_path(path: Path, example: str = "out.wav") -> None:
    """The checks every output file needs whatever its format: not a folder or device, in a writable folder."""
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name such as {path / example}")
    if path.exists() and not path.is_file():
        raise OutputError(f"{path}: is not a regular file (a device or pipe); give a file name such as {example}")


def check_writable(path: Path) -> None:
    """Fail before any synthesis when the output could not be written."""
    check_output_path(path)
    output_format(path)
    parent = path.parent if str(path.parent) else Path(".")
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

        from .files import sweep_stale, temp_path

        fmt, subtype = output_format(self.path)
        subtype = self.subtype or subtype
        sweep_stale(self.path)
        try:
            self._tmp = str(temp_path(self.path, ".partial"))
        except OSError as e:
            raise _write_error(self.path, e, self._tmp) from e
        try:
            self._file = sf.SoundFile(self._tmp, "w", samplerate=self.rate, channels=1, format=fmt, subtype=subtype)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            Path(self._tmp).unlink(missing_ok=True)
            raise _write_error(self.path, e, self._tmp) from e
        except BaseException:  # Ctrl-C or SIGTERM while opening: __exit__ will not run, so the temp file goes here
            Path(self._tmp).unlink(missing_ok=True)
            raise
        return self

    def write(self, audio: np.ndarray) -> None:
        import soundfile as sf

        if audio.size:
            try:
                self._file.write(np.clip(audio, -1.0, 1.0))
            except (sf.LibsndfileError, RuntimeError, OSError) as e:
                raise _write_error(self.path, e, self._tmp) from e
            self.frames += len(audio)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        import soundfile as sf

        try:
            self._file.close()
            if exc_type is None:
                os.chmod(self._tmp, 0o644)
                os.replace(self._tmp, self.path)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            if exc_type is None:
                raise _write_error(self.path, e, self._tmp) from e
        finally:
            Path(self._tmp).unlink(missing_ok=True)  # gone already after a successful rename


def _write_error(path: Path, error: BaseException, tmp: str | None = None) -> OutputError:
    """A failed write as one line naming the likely cause (a full disk, a file size limit, permissions) and the user's file."""
    import errno
    import shutil

    from .files import shown_name

    path, text, code = shown_name(path), str(error), getattr(error, "errno", None)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        full = code == errno.ENOSPC or "No space left" in text or shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        full = False
    if full:
        return OutputError(f"{path}: the disk is full; free some space or write to another disk (nothing was left behind)")
    if code == errno.EFBIG or "File too large" in text or _at_size_limit(tmp):
        return OutputError(f"{path}: the file reached this system's file size limit (ulimit -f); raise the limit or write a shorter "
                           "piece (nothing was left behind)")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{path}: cannot write here ({os.strerror(code)}); choose another output folder")
    return OutputError(f"{path}: writing failed ({text.strip() or error.__class__.__name__}); check the disk and the output folder")


def _at_size_limit(tmp: str | None) -> bool:
    """Whether the temp file stopped at the process's file size limit (libsndfile reports that only as "System error")."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        return tmp is not None and soft != resource.RLIM_INFINITY and os.path.getsize(tmp) >= soft - (1 << 16)
    except (ImportError, OSError, ValueError):
        return False


def write_audio(path: Path, audio: np.ndarray, rate: int) -> None:
    """Write a whole clip atomically."""
    with AudioWriter(path, rate) as w:
        w.write(audio)
