"""The heart base voice (hibari): reproducible per seed, reshaped as the profile says, and never touching the network."""

import os
import subprocess
import sys

import numpy as np
import pytest

from higgs_cli.engines.hibari import HeartVoice, model_path

from .helpers import median_f0, spectral_centroid

TEXT = "The harbour lights came on one by one as the evening fog rolled in."


@pytest.fixture(scope="module")
def heart():
    return HeartVoice()


def test_same_seed_same_samples_other_seed_other_noise(heart):
    a, b, c = heart.render(TEXT, 3), heart.render(TEXT, 3), heart.render(TEXT, 4)
    assert a.dtype == np.float32 and a.ndim == 1 and 2.5 < len(a) / heart.sample_rate < 7.0
    assert np.array_equal(a, b)
    assert len(a) == len(c) and not np.array_equal(a, c)  # same prosody, fresh vocoder noise


def test_pitch_moves_f0_and_tilt_brightens(heart):
    short = "Hello there, how are you today?"
    plain, low = heart.render(short, 0), heart.render(short, 0, pitch=0.5)
    assert len(plain) == len(low)  # pitch leaves the timing alone
    # an octave down; hibari's free-phase branch keeps some original harmonics, so a tracker reads a few frames an octave up
    assert 0.45 < median_f0(low, heart.sample_rate) / median_f0(plain, heart.sample_rate) < 0.65
    bright = heart.render(TEXT, 0, tilt=6.0)
    assert spectral_centroid(bright, heart.sample_rate) > 1.3 * spectral_centroid(plain, heart.sample_rate)


def test_only_the_bundled_heart_model_is_loaded(heart):
    assert model_path().is_file() and model_path().parent.name == "assets"
    assert os.path.samefile(heart._tts.model_path, model_path())


_OFFLINE = """
import socket, sys
def refuse(*a, **k):
    raise OSError("network used")
socket.socket.connect = refuse
socket.create_connection = refuse
import hibari.voices
hibari.voices.download = refuse
from higgs_cli.engines.hibari import HeartVoice
audio = HeartVoice().render("Hello from the harbour.", 0, pitch=0.9, formant=1.1, tilt=2.0)
print(len(audio))
"""



def test_renders_with_no_network_and_downloads_nothing(tmp_path):
    env = {**os.environ, "HIBARI_HOME": str(tmp_path / "hibari"), "XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _OFFLINE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 12_000  # half a second or more of speech
    assert not (tmp_path / "hibari").exists()  # hibari's voice cache: nothing fetched
    assert not [p for p in tmp_path.rglob("*") if "hibari" in p.name or p.suffix == ".onnx"]
