"""Loudness metering (BS.1770 K-weighting, gated integrated loudness, 4x oversampled true peak) and true-peak limiting, in blocks."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .options import ACX_NOISE_FLOOR_DB, ACX_RMS_RANGE, BLOCK_FRAMES, LIMITER_HOLD, LIMITER_LOOKAHEAD, SAFETY_PEAK_DB, SAMPLE_RATE

FLOOR_DB = -120.0  # what "silence" measures as, instead of -inf


def db(value: float) -> float:
    """Amplitude to dB, floored at FLOOR_DB."""
    return max(FLOOR_DB, 20.0 * math.log10(value)) if value > 0 else FLOOR_DB


def _undb(value: float) -> float:
    return 10.0 ** (value / 20.0)


# --- metering ----------------------------------------------------------------------------------

_TP_TAPS = 97
_TP_PAD = 32  # input samples of context either side of an oversampled span (filter half-length is 12)


def _k_weighting(rate: int) -> np.ndarray:
    """BS.1770 K-weighting (RBJ high shelf +4 dB @1.5 kHz, high pass @38 Hz, as pyloudnorm) as second-order sections."""
    sections = []
    for kind, gain, q, fc in (("shelf", 4.0, 1 / math.sqrt(2), 1500.0), ("pass", 0.0, 0.5, 38.0)):
        a_ = 10 ** (gain / 40.0)
        w0 = 2 * math.pi * fc / rate
        alpha, cw = math.sin(w0) / (2 * q), math.cos(w0)
        if kind == "shelf":
            s = 2 * math.sqrt(a_) * alpha
            b = [a_ * ((a_ + 1) + (a_ - 1) * cw + s), -2 * a_ * ((a_ - 1) + (a_ + 1) * cw), a_ * ((a_ + 1) + (a_ - 1) * cw - s)]
            a = [(a_ + 1) - (a_ - 1) * cw + s, 2 * ((a_ - 1) - (a_ + 1) * cw), (a_ + 1) - (a_ - 1) * cw - s]
        else:
            b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
            a = [1 + alpha, -2 * cw, 1 - alpha]
        sections.append([c / a[0] for c in b] + [1.0] + [c / a[0] for c in a[1:]])
    return np.array(sections)


@functools.cache
def _upsampling_phases() -> tuple[np.ndarray, ...]:
    """The 4x interpolation filter, split into its four phases: 97 taps (24 per phase), twice BS.1770-4 Annex 2's 48.

    The Annex's short filter under-reads inter-sample peaks after heavy limiting by ~0.2 dB against an ideal
    (soxr VHQ) reconstruction; this one comes within ~0.04 dB, so -1 dBTP holds by either measure."""
    from scipy.signal import firwin

    h = firwin(_TP_TAPS, 0.25, window=("kaiser", 8.0)) * 4
    return tuple(h[p::4] for p in range(4))


def _oversampled_peaks(span: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Per-sample true peak (4x oversampled) for span[_TP_PAD:-_TP_PAD], the pads giving the filter its context."""
    inner = np.abs(span[_TP_PAD: len(span) - _TP_PAD])
    if not inner.size or float(np.max(np.abs(span))) * 2 < floor:
        return inner  # inter-sample overs never reach 6 dB on real audio: spare the oversampling
    x = span.astype(np.float64)
    peaks = inner.astype(np.float64)
    shift = (_TP_TAPS - 1) // 8  # the filter delays by (taps - 1) / 2 output samples: a quarter of that in input samples
    for phase in _upsampling_phases():
        np.maximum(peaks, np.abs(np.convolve(x, phase)[_TP_PAD + shift: len(span) - _TP_PAD + shift]), out=peaks)
    return peaks


class LoudnessMeter:
    """Streaming BS.1770-4 integrated loudness (400 ms gated blocks, 75% overlap), true peak, RMS and noise floor."""

    def __init__(self, rate: int):
        from scipy.signal import sosfilt_zi

        self.rate = rate
        self._sos = _k_weighting(rate)
        self._zi = np.zeros((2, 2)) * sosfilt_zi(self._sos)
        self._sub = round(0.1 * rate)  # 100 ms: gating blocks are four of these
        self._carry_k = np.zeros(0)
        self._carry_raw = np.zeros(0)
        self._k_energy: list[np.ndarray] = []
        self._raw_energy: list[np.ndarray] = []
        self._tp_tail = np.zeros(2 * _TP_PAD)
        self.true_peak = 0.0
        self.frames = 0

    def add(self, block: np.ndarray) -> None:
        from scipy.signal import sosfilt

        x = block.astype(np.float64)
        self.frames += len(x)
        weighted, self._zi = sosfilt(self._sos, x, zi=self._zi)
        self._carry_k = self._collect(np.concatenate([self._carry_k, weighted]), self._k_energy)
        self._carry_raw = self._collect(np.concatenate([self._carry_raw, x]), self._raw_energy)
        self._add_peak(x)

    @property
    def sum_squares(self) -> float:
        return float(sum(float(e.sum()) for e in self._raw_energy) + np.square(self._carry_raw).sum())

    def _collect(self, samples: np.ndarray, into: list[np.ndarray]) -> np.ndarray:
        whole = len(samples) // self._sub
        if whole:
            into.append(np.square(samples[: whole * self._sub]).reshape(whole, self._sub).sum(axis=1))
        return samples[whole * self._sub:]

    def _add_peak(self, x: np.ndarray) -> None:
        span = np.concatenate([self._tp_tail, x])
        if len(span) < 4 * _TP_PAD:
            self._tp_tail = span
            return
        self.true_peak = max(self.true_peak, float(_oversampled_peaks(span, self.true_peak).max()))
        self._tp_tail = span[-2 * _TP_PAD:]

    def _flush_peak(self) -> None:
        span = np.concatenate([self._tp_tail, np.zeros(2 * _TP_PAD)])
        self.true_peak = max(self.true_peak, float(_oversampled_peaks(span).max()))
        self._tp_tail = np.zeros(2 * _TP_PAD)

    def integrated(self) -> float:
        """Gated integrated loudness in LUFS (FLOOR_DB when everything is below the absolute gate)."""
        sub = np.concatenate(self._k_energy) if self._k_energy else np.zeros(0)
        if len(sub) < 4:
            return FLOOR_DB
        z = (sub[:-3] + sub[1:-2] + sub[2:-1] + sub[3:]) / (4 * self._sub)
        with np.errstate(divide="ignore"):
            levels = -0.691 + 10 * np.log10(z)
        gated = z[levels >= -70.0]
        if gated.size == 0:
            return FLOOR_DB
        relative = -0.691 + 10 * math.log10(gated.mean()) - 10.0
        gated = z[(levels > relative) & (levels >= -70.0)]
        return -0.691 + 10 * math.log10(gated.mean()) if gated.size else FLOOR_DB

    def noise_floor(self) -> float:
        """RMS (dBFS) of the quietest 500 ms window, as ACX's noise-floor check reads it."""
        sub = np.concatenate(self._raw_energy) if self._raw_energy else np.zeros(0)
        if len(sub) < 5:
            return db(math.sqrt(self.sum_squares / max(1, self.frames)))
        windows = np.convolve(sub, np.ones(5), mode="valid") / (5 * self._sub)
        return db(math.sqrt(float(windows.min())))

    def report(self, acx: bool = False) -> dict[str, float | bool]:
        self._flush_peak()
        out: dict[str, float | bool] = {"integrated_lufs": round(self.integrated(), 2), "true_peak_dbtp": round(db(self.true_peak), 2),
                                        "rms_db": round(db(math.sqrt(self.sum_squares / max(1, self.frames))), 2)}
        if acx:
            out["noise_floor_db"] = round(self.noise_floor(), 2)
            lo, hi = ACX_RMS_RANGE
            out["acx_ok"] = bool(lo <= out["rms_db"] <= hi and out["true_peak_dbtp"] <= -3.0 and out["noise_floor_db"] <= ACX_NOISE_FLOOR_DB)
        return out


def measure_file(path: Path, block: int = BLOCK_FRAMES, acx: bool = True) -> dict[str, float | bool]:
    """Duration, integrated loudness, true peak, RMS and noise floor of any audio file, streamed in blocks."""
    from .containers import read_blocks

    meter = LoudnessMeter(SAMPLE_RATE)
    for chunk in read_blocks(path, SAMPLE_RATE, block):
        meter.add(chunk)
    return {"duration": round(meter.frames / SAMPLE_RATE, 3), **meter.report(acx)}


# --- limiting ----------------------------------------------------------------------------------


def _trailing_min(r: np.ndarray, width: int) -> np.ndarray:
    """out[k] = min(r[k : k + width]) for every full window, in O(n log width)."""
    out, span = r, 1
    while span * 2 <= width:
        out = np.minimum(out[:-span], out[span:])
        span *= 2
    n = len(r) - width + 1
    return np.minimum(out[:n], out[width - span: width - span + n])


class Limiter:
    """Lookahead true-peak limiter over stacked rows (row 0 drives it; every row gets the same gain, so stems stay summable)."""

    def __init__(self, rate: int, ceiling_db: float, rows: int):
        self.ceiling = _undb(ceiling_db - 0.05)
        self.look = max(1, round(LIMITER_LOOKAHEAD * rate))
        self.width = self.look + round(LIMITER_HOLD * rate)
        self._x = np.zeros((rows, _TP_PAD), np.float32)
        self._x0 = -_TP_PAD  # absolute index of _x[:, 0]
        self._r = np.ones(self.width - 1)  # allowed gain per sample, from _r0
        self._r0 = -(self.width - 1)
        self._out = 0  # next absolute index to emit
        self.frames = 0
        self.min_gain = 1.0

    def process(self, rows: np.ndarray) -> np.ndarray:
        self.frames += rows.shape[1]
        self._x = np.concatenate([self._x, rows.astype(np.float32)], axis=1)
        return self._advance()

    def flush(self) -> np.ndarray:
        pad = np.zeros((self._x.shape[0], _TP_PAD + self.look), np.float32)
        self._x = np.concatenate([self._x, pad], axis=1)
        out = self._advance()
        return out[:, : out.shape[1] - max(0, self._out - self.frames)]

    def _advance(self) -> np.ndarray:
        rb = self._r0 + len(self._r)
        new_rb = self._x0 + self._x.shape[1] - _TP_PAD
        if new_rb > rb:
            span = self._x[0, rb - _TP_PAD - self._x0:]
            peaks = _oversampled_peaks(span, self.ceiling)
            self._r = np.concatenate([self._r, np.minimum(1.0, self.ceiling / np.maximum(peaks, 1e-12))])
            rb = new_rb
        end = rb - self.look + 1
        if end <= self._out:
            return np.zeros((self._x.shape[0], 0), np.float32)
        m = _trailing_min(self._r[self._out - self.width + 1 - self._r0: end + self.look - 1 - self._r0], self.width)
        c = np.concatenate([[0.0], np.cumsum(m)])
        gain = (c[self.look:] - c[: -self.look]) / self.look
        self.min_gain = min(self.min_gain, float(gain.min()))
        out = self._x[:, self._out - self._x0: end - self._x0] * gain.astype(np.float32)
        self._out = end
        self._trim(rb)
        return out

    def _trim(self, rb: int) -> None:
        keep_r = self._out - (self.width - 1)
        self._r, self._r0 = self._r[keep_r - self._r0:], keep_r
        keep_x = min(self._out, rb - _TP_PAD)
        self._x, self._x0 = self._x[:, keep_x - self._x0:], keep_x


def limit_stream(pieces: Iterable[np.ndarray], rate: int = SAMPLE_RATE, ceiling_db: float = SAFETY_PEAK_DB) -> Iterator[np.ndarray]:
    """The true-peak limiter over audio that arrives piece by piece (`-o -`, the server): the same samples out, in
    order and in total, none above `ceiling_db`; a piece's last few milliseconds leave with the next piece."""
    limiter = Limiter(rate, ceiling_db, 1)
    for piece in pieces:
        yield limiter.process(np.asarray(piece, np.float32)[None, :])[0]
    yield limiter.flush()[0]
