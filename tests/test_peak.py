"""Never clip: every output stays at or below -1 dBTP, at the default programme level, with no target, or pushed loud."""

import numpy as np
import pytest
import soundfile as sf

from higgs_cli.mixing import finish
from higgs_cli.options import FinishOptions

from .test_cli import run

TEXT = "Stop! The bridge is out. Turn the cart around, and go back the way you came, quickly now."


def true_peak_db(audio: np.ndarray, rate: int) -> float:
    """Peak of the signal upsampled 4x with soxr (an interpolator independent of the limiter's own)."""
    import soxr

    return float(20 * np.log10(np.abs(soxr.resample(audio, rate, 4 * rate, quality="VHQ")).max()))


@pytest.mark.parametrize("loudness", [None, "off", "-5"])  # the default (-18 LUFS), the level as rendered, far too loud
def test_cli_output_never_exceeds_minus_one_dbtp(tmp_path, loudness):
    out = tmp_path / "out.wav"
    args = ["generate", "--text", TEXT, "--engine", "espeak", "-o", str(out), "--quiet", "--no-cache"]
    result = run(*args, *(["--loudness", loudness] if loudness else []))
    assert result.exit_code == 0, result.output
    audio, rate = sf.read(out, dtype="float32")
    assert true_peak_db(audio, rate) <= -1.0 + 0.1  # 0.1 dB: two interpolators' disagreement at a limited peak
    if loudness is None:
        import pyloudnorm

        assert pyloudnorm.Meter(rate).integrated_loudness(audio.astype(np.float64)) == pytest.approx(-18.0, abs=0.5)


def test_a_clipping_render_is_brought_under_the_ceiling(tmp_path):
    rate = 24_000
    t = np.arange(3 * rate) / rate
    hot = (1.6 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)  # peaks at +4 dBFS
    sf.write(tmp_path / "raw.wav", hot, rate, subtype="FLOAT")
    result = finish(tmp_path / "raw.wav", tmp_path / "out.wav", speech_regions=[(0.0, 3.0, "A")], options=FinishOptions())
    audio, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert true_peak_db(audio, rate) <= -1.0 + 0.1 and result["loudness"]["true_peak_dbtp"] <= -1.0


def test_streamed_audio_is_limited_piece_by_piece_and_quiet_audio_passes_untouched():
    from higgs_cli.loudness import limit_stream

    rate = 24_000
    t = np.arange(2 * rate) / rate
    hot = (1.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    cuts = [0, 999, 1000, 17_000, 30_001, len(hot)]  # uneven pieces, one empty
    out = np.concatenate(list(limit_stream(hot[a:b] for a, b in zip(cuts, cuts[1:]))))
    assert len(out) == len(hot) and true_peak_db(out, rate) <= -1.0 + 0.1
    quiet = hot * 0.2  # -4.4 dBFS: nothing to limit
    assert np.array_equal(np.concatenate(list(limit_stream([quiet[:5000], quiet[5000:]]))), quiet)
