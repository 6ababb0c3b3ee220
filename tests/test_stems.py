import numpy as np
import soundfile as sf

from higgs_cli.mixing import finish
from higgs_cli.options import FinishOptions

from .audio_fixtures import rms_db, speech_track, tone_file, window


def test_stems_sum_back_to_the_finished_mix(tmp_path):
    path, regions, _ = speech_track(tmp_path)
    music = tone_file(tmp_path / "bed.wav", 4.0)
    result = finish(path, tmp_path / "mix.wav", speech_regions=regions, music_cues=[(0.0, music)],
                    options=FinishOptions(loudness="podcast", music_gain=0.0, duck=6.0), stems=tmp_path / "stems")
    assert sorted(p.name for p in (tmp_path / "stems").iterdir()) == ["MAYA.wav", "TOM.wav", "music.wav"]
    assert set(result["stems"]) == {"MAYA", "TOM", "music"}
    mix, _ = sf.read(tmp_path / "mix.wav", dtype="float32")
    stems = {p.stem: sf.read(p, dtype="float32")[0] for p in (tmp_path / "stems").iterdir()}
    assert all(len(s) == len(mix) for s in stems.values())
    assert np.max(np.abs(sum(stems.values()) - mix)) < 1e-3  # the same programme and limiter gain on every stem
    maya_start, maya_end, _ = regions[0]
    assert rms_db(window(stems["TOM"], maya_start, maya_end)) < -100  # each speaker only in their own turns
    assert rms_db(window(stems["MAYA"], maya_start, maya_end)) > -40
