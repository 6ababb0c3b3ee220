"""Real audio made in the test run for the finishing tests: eSpeak speech, tones and noise, measured, never mocked."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from higgs_cli import engines
from higgs_cli.audio import resample, trim_silence
from higgs_cli.engines import ChunkRequest
from higgs_cli.voices import resolve

RATE = 24_000
LINES = (("MAYA", "ava", "The harbour lights came on one by one."),
         ("TOM", "brock", "The evening fog rolled in from the sea."),
         ("MAYA", "ava", "Nobody expected the ferry tonight."))


def speech_track(folder: Path, gap: float = 2.0) -> tuple[Path, list[tuple[float, float, str]], list[dict]]:
    """A float wav of three eSpeak lines separated by `gap` seconds, its speech regions and manifest-like chunks."""
    engine = engines.create("espeak")
    parts, regions, chunks, pos = [], [], [], 0
    for i, (speaker, voice, text) in enumerate(LINES):
        audio = engine.synthesize(ChunkRequest(i, speaker, text, resolve(voice), 1)).audio
        audio = trim_silence(resample(audio, engine.sample_rate, RATE), RATE)
        parts += [np.zeros(round(gap * RATE), np.float32), audio]
        start = pos + round(gap * RATE)
        pos = start + len(audio)
        regions.append((start / RATE, pos / RATE, speaker))
        chunks.append({"index": i, "speaker": speaker, "text": text, "start": round(start / RATE, 3), "end": round(pos / RATE, 3)})
    parts.append(np.zeros(round(gap * RATE), np.float32))
    path = folder / "speech.wav"
    sf.write(path, np.concatenate(parts), RATE, subtype="FLOAT")
    return path, regions, chunks


def tone_file(path: Path, seconds: float, freq: float = 330.0, rate: int = 44_100, level: float = 0.3) -> Path:
    """A steady two-partial tone: a stand-in music bed whose level is easy to measure."""
    t = np.arange(round(seconds * rate)) / rate
    sf.write(path, (level * (np.sin(2 * np.pi * freq * t) + 0.5 * np.sin(2 * np.pi * 1.5 * freq * t)) / 1.5).astype(np.float32), rate)
    return path


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    """A tiny valid red PNG, written by hand so no imaging library is needed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes((255, 0, 0)) * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def true_peak_db(audio: np.ndarray) -> float:
    return 20 * np.log10(np.max(np.abs(resample_poly(audio.astype(np.float64), 4, 1))))


def rms_db(audio: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(audio.astype(np.float64))) + 1e-20)


def window(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    return audio[round(start * RATE): round(end * RATE)]
