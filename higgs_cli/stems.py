"""Stems: one aligned, full-length track per speaker plus the music bed, which sum back to the finished mix."""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

import numpy as np

from .audio import AudioWriter
from .errors import OutputError

MUSIC_STEM = "music"


def stem_name(speaker: str) -> str:
    """A file-system-safe stem file name for a speaker (never `music`, which is the bed's)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", speaker).strip("_") or "speaker"
    return f"{slug}_voice" if slug.lower() == MUSIC_STEM else slug


def speaker_of_samples(positions: np.ndarray, starts: np.ndarray, region_speaker: np.ndarray) -> np.ndarray:
    """Index of the speaker owning each sample: the latest region starting at or before it (the first region before any)."""
    idx = np.searchsorted(starts, positions, side="right") - 1
    return region_speaker[np.clip(idx, 0, None)]


def split_speech(speech: np.ndarray, start: int, starts: np.ndarray, region_speaker: np.ndarray, count: int) -> list[np.ndarray]:
    """Split one block of the speech track (beginning at sample `start`) into `count` per-speaker blocks summing to it."""
    if count == 1 or starts.size == 0:
        return [speech] + [np.zeros_like(speech) for _ in range(count - 1)]
    owner = speaker_of_samples(np.arange(start, start + len(speech)), starts, region_speaker)
    return [np.where(owner == i, speech, 0.0).astype(np.float32) for i in range(count)]


class StemWriter:
    """Writes `<dir>/<speaker>.wav` for each speaker and `<dir>/music.wav`; files appear only when all succeed."""

    def __init__(self, directory: Path, speakers: list[str], rate: int, music: bool):
        self.directory, self.rate = Path(directory), rate
        self.names = [stem_name(s) for s in speakers] + ([MUSIC_STEM] if music else [])
        if len(set(self.names)) != len(self.names):
            raise OutputError(f"speaker names {speakers} collide as stem file names; rename the speakers")
        self._stack = ExitStack()
        self._writers: list[AudioWriter] = []
        self._created = False

    def __enter__(self) -> StemWriter:
        if self.directory.exists() and not self.directory.is_dir():
            raise OutputError(f"{self.directory}: exists and is not a folder; give a folder for --stems")
        self._created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writers = [self._stack.enter_context(AudioWriter(self.directory / f"{n}.wav", self.rate)) for n in self.names]
        return self

    def write(self, blocks: list[np.ndarray]) -> None:
        for writer, block in zip(self._writers, blocks):
            writer.write(block)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stack.__exit__(exc_type, exc, tb)
        if exc_type is not None and self._created and not any(self.directory.iterdir()):
            self.directory.rmdir()

    def paths(self) -> dict[str, str]:
        return {n: str(self.directory / f"{n}.wav") for n in self.names}
