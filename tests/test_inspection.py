import json

import pyloudnorm as pyln
import pytest
import soundfile as sf
from PIL import Image

from higgs_cli.inspection import inspect
from higgs_cli.mixing import finish
from higgs_cli.options import FinishOptions

from .audio_fixtures import speech_track, tone_file


def test_inspect_reports_loudness_speakers_and_music_and_draws_a_timeline(tmp_path):
    path, regions, chunks = speech_track(tmp_path)
    music = tone_file(tmp_path / "bed.wav", 4.0)
    out = tmp_path / "scene.wav"
    result = finish(path, out, speech_regions=regions, music_cues=[(0.0, music)], options=FinishOptions(loudness="podcast", duck=10.0))
    (tmp_path / "scene.json").write_text(json.dumps({"chunks": chunks, "finish": result}))
    report = inspect(out, png=tmp_path / "scene.png")
    audio, rate = sf.read(out)
    assert report["duration"] == pytest.approx(len(audio) / rate, abs=0.01)
    assert report["integrated_lufs"] == pytest.approx(pyln.Meter(rate).integrated_loudness(audio), abs=0.2)
    assert report["true_peak_dbtp"] <= -0.9
    assert set(report["speakers"]) == {"MAYA", "TOM"}
    assert report["speakers"]["TOM"] == pytest.approx(regions[1][1] - regions[1][0], abs=0.01)
    assert report["music"]["under_speech_db"] == pytest.approx(report["music"]["clear_db"] - 10.0, abs=1.0)
    with Image.open(tmp_path / "scene.png") as img:
        assert img.format == "PNG" and img.width > 1000


def test_inspect_without_manifest_measures_only(tmp_path):
    tone = tone_file(tmp_path / "t.wav", 2.0, rate=24_000)
    report = inspect(tone)
    assert report["duration"] == 2.0 and "speakers" not in report
