"""Higgs audio codes and their framing: the delay pattern with stream markers, extraction from generated frames,
and decoding a chunk after its chain's previous frames so joins have no seams. torch is imported inside."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

LEFT_CONTEXT_FRAMES = 30  # ~1.2 s of codes borrowed from the previous chunk when decoding


def with_stream_markers(codes: Any, bos: int, eos: int) -> Any:
    """(K, T) codes -> (T + K + 1, K) model input: stream BOS/EOS added, codebook k delayed by k frames."""
    import torch

    k, t = codes.shape
    out = torch.full((k, t + k + 1), eos, dtype=torch.long)
    for i in range(k):
        out[i, :i + 1] = bos
        out[i, i + 1:i + 1 + t] = codes[i]
    return out.T


def extract_codes(generated: Any, bos: int, eos: int) -> Any:
    """Generated (steps, K) delayed frames -> (K, T) codes between the stream BOS row and the first EOS row."""
    import torch

    k = generated.shape[1]
    bos_rows = (generated == bos).all(-1).nonzero()
    start = int(bos_rows[-1, 0]) + 1 if len(bos_rows) else 0
    body = generated[start:]
    eos_rows = (body == eos).all(-1).nonzero()
    body = body[: int(eos_rows[0, 0])] if len(eos_rows) else body
    n = body.shape[0] - k + 1
    if n <= 0:
        return torch.zeros((k, 0), dtype=torch.long)
    codes = torch.stack([body[i:i + n, i] for i in range(k)])
    return codes.clamp(0, bos - 1)


def decode_joined(decode: Callable[[Any], Any], codes: Any, left: Any | None, hop: int) -> np.ndarray:
    """Decode (K, T) codes after `left` (K, L) context codes and cut the overlap: float32 mono."""
    import torch

    lead = 0 if left is None else left.shape[1]
    full = codes if left is None else torch.cat([left, codes], dim=1)
    wav = decode(full)
    start = lead * hop
    return np.ascontiguousarray(wav[start:start + codes.shape[1] * hop], dtype=np.float32)


