"""Speaker embeddings for the quality gate's voice check: a GE2E speaker encoder (3-layer LSTM, 256-d, trained on
LibriSpeech/VoxCeleb) whose weights ship in the `resemblyzer` wheel, run here on our own mel features.

Resemblyzer's own audio code pulls in librosa and numba (seconds of JIT at first use); the encoder needs only a
40-band power mel spectrogram at 16 kHz (25 ms Hann windows, 10 ms hop, Slaney mel scale), computed below with
numpy. Utterances are cut into 1.6 s partials at a 0.77 s step; the embedding is their normalised mean.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .interrupts import heavy_import

RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL = 160  # frames per partial utterance (1.6 s)
STEP = 77  # frames between partials (the encoder's training used 1.3 partials per second)
_MODEL: dict[str, Any] = {}
_LOCK = threading.Lock()


def weights_path() -> Path:
    """The trained encoder inside the installed resemblyzer package (found without importing it)."""
    from .asr import QaUnavailable

    spec = importlib.util.find_spec("resemblyzer")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt" if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise QaUnavailable("the voice check needs the speaker encoder's weights: pip install --no-deps resemblyzer==0.1.4 "
                            "(`make install-higgs` does), or pass --qa off")
    return path


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular filters on the Slaney mel scale, area-normalised."""
    def to_mel(hz: np.ndarray) -> np.ndarray:
        return np.where(hz < 1000, hz * 3 / 200, 15 + np.log(np.maximum(hz, 1e-9) / 1000) / (np.log(6.4) / 27))

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel < 15, mel * 200 / 3, 1000 * np.exp((mel - 15) * np.log(6.4) / 27))

    edges = to_hz(np.linspace(to_mel(np.array(0.0)), to_mel(np.array(RATE / 2)), N_MELS + 2))
    bins = np.linspace(0, RATE / 2, N_FFT // 2 + 1)
    rising = (bins[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / np.diff(edges)[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling))
    return (weights * (2 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


def mel_power(wav: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) power mel spectrogram, frames centred on multiples of HOP (zero padding at the edges)."""
    padded = np.pad(np.asarray(wav, dtype=np.float32), N_FFT // 2)
    n = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return (power @ mel_filters().T).astype(np.float32)


def partials(mel: np.ndarray) -> np.ndarray:
    """(n, PARTIAL, N_MELS) windows covering the whole utterance; a short one is zero-padded."""
    if len(mel) <= PARTIAL:
        return np.pad(mel, ((0, PARTIAL - len(mel)), (0, 0)))[None]
    starts = list(range(0, len(mel) - PARTIAL + 1, STEP))
    if starts[-1] + PARTIAL < len(mel):
        starts.append(len(mel) - PARTIAL)  # the tail, as a full window ending at the last frame
    return np.stack([mel[s: s + PARTIAL] for s in starts])


def _encoder() -> Any:
    torch = heavy_import("torch")

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(N_MELS, 256, 3, batch_first=True)
            self.linear = torch.nn.Linear(256, 256)

        def forward(self, mels: Any) -> Any:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.norm(raw, dim=1, keepdim=True)

    model = Encoder()
    state = torch.load(weights_path(), map_location="cpu")
    model.load_state_dict(state["model_state"], strict=False)  # the checkpoint also holds a training-only similarity scale
    return model.eval()


def embed(wav: np.ndarray) -> np.ndarray:
    """A unit-length 256-d speaker embedding of 16 kHz mono speech."""
    import torch

    with _LOCK:
        if "encoder" not in _MODEL:
            _MODEL["encoder"] = _encoder()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small LSTM: one thread is as fast, and spinning threads crawl on a busy machine (measured 0.65 s vs 11 s)
    try:
        with torch.inference_mode():
            out = _MODEL["encoder"](torch.from_numpy(partials(mel_power(wav)))).numpy()
    finally:
        torch.set_num_threads(threads)
    mean = out.mean(axis=0)
    return mean / np.linalg.norm(mean)
