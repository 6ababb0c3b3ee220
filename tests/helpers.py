"""Small measuring tools for tests: real audio, measured, never mocked."""

from __future__ import annotations

import numpy as np


def median_f0(audio: np.ndarray, rate: int) -> float:
    """Median fundamental frequency (Hz) of voiced frames, by WORLD's Harvest tracker (robust to octave errors)."""
    import pyworld

    f0, _ = pyworld.harvest(audio.astype(np.float64), rate, f0_floor=50.0, f0_ceil=500.0)
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else 0.0


def spectral_centroid(audio: np.ndarray, rate: int) -> float:
    """Power-weighted mean frequency (Hz): brighter voices sit higher."""
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    hz = np.fft.rfftfreq(len(audio), 1 / rate)
    return float(np.sum(hz * power) / np.sum(power))


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio)))) if audio.size else 0.0


def add_calm_and_bright_voices() -> None:
    """Two clip-less user voices (profiles only) for the higgs engine's dialogue tests: calm (masculine) and bright."""
    from higgs_cli.voices import user_voices_dir

    folder = user_voices_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "calm.yaml").write_text("description: calm, low voice\ngender: masculine\n")
    (folder / "bright.yaml").write_text("description: bright, quick voice\ngender: feminine\n")
