import numpy as np
import pytest

from higgs_cli import engines
from higgs_cli.engines import ChunkRequest
from higgs_cli.errors import EngineUnavailable, UsageError
from higgs_cli.voices import resolve

from .helpers import median_f0, rms, spectral_centroid

TEXT = "The harbour lights came on one by one as the evening fog rolled in."


@pytest.fixture(scope="module")
def piper():
    return engines.create("piper")


def render(engine, voice, text=TEXT, seed=1):
    return engine.synthesize(ChunkRequest(0, "X", text, resolve(voice), seed)).audio


def test_auto_uses_a_cpu_engine_here_and_says_why():
    name, note = engines.choose("auto")
    assert name == "piper"
    assert "higgs not used" in note


def test_unknown_engine():
    with pytest.raises(UsageError, match="unknown engine"):
        engines.choose("nope")


def test_higgs_requested_explicitly_without_weights_is_refused():
    with pytest.raises(EngineUnavailable, match="higgs"):
        engines.choose("higgs")


def test_piper_speaks_at_a_plausible_rate(piper):
    audio = render(piper, "joe")
    seconds = len(audio) / piper.sample_rate
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 2.5 < seconds < 7.0  # 13 words of normal speech
    assert 0.02 < rms(audio) < 0.5


def test_piper_voices_differ_as_their_profiles_say(piper):
    audio = {v: render(piper, v) for v in ("brock", "joe", "otis", "ava", "nell", "mae")}
    f0 = {v: median_f0(audio[v], piper.sample_rate) for v in ("brock", "ava", "nell")}
    assert f0["brock"] * 1.4 < f0["ava"], f0  # brock: heart an octave down; ava: heart shifted by 0.9
    assert f0["ava"] * 1.2 < f0["nell"], f0  # nell: heart shifted by 1.2 (1.33x ava)
    centroid = {v: spectral_centroid(a, piper.sample_rate) for v, a in audio.items()}
    assert centroid["joe"] < centroid["otis"] and centroid["mae"] < centroid["nell"], centroid  # tilt +4 / -4 and shifts


def test_piper_drops_sound_event_markup(piper):
    assert len(render(piper, "joe", "<SE>[Laughter]</SE>")) == 0


def test_espeak_voices_differ():
    engine = engines.create("espeak")
    a = render(engine, "ava")
    assert 2.0 < len(a) / engine.sample_rate < 7.0
    assert median_f0(a, engine.sample_rate) > 1.2 * median_f0(render(engine, "brock"), engine.sample_rate)


@pytest.mark.parametrize("voice", ["joe", "ava"])  # one voice on each base (Piper VITS, hibari)
def test_piper_is_reproducible_per_seed(piper, voice):
    a, b, c = render(piper, voice, seed=5), render(piper, voice, seed=5), render(piper, voice, seed=6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[: len(c)], c[: len(a)])
