import numpy as np
import pyloudnorm as pyln
import pytest
import soundfile as sf

from higgs_cli.errors import UsageError
from higgs_cli.mixing import finish, shorten_silences
from higgs_cli.options import FinishOptions

from .audio_fixtures import RATE, rms_db, speech_track, tone_file, true_peak_db, window


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return speech_track(tmp_path_factory.mktemp("speech"))


def test_bed_ducks_under_speech_by_the_requested_amount_and_breathes_back_in_gaps(speech, tmp_path):
    path, regions, _ = speech
    music = tone_file(tmp_path / "bed.ogg", 30.0)  # longer than the programme: no loop crossfade in the way
    options = FinishOptions(duck=12.0, music_gain=-10.0, duck_attack=0.2, duck_release=0.5, music_fade=0.3)
    result = finish(path, tmp_path / "out.wav", speech_regions=regions, music_cues=[(0.0, music)], options=options, stems=tmp_path / "stems")
    bed, _ = sf.read(tmp_path / "stems" / "music.wav", dtype="float32")
    for start, end, _ in regions:
        under = rms_db(window(bed, start + 0.1, end - 0.1))
        gap = rms_db(window(bed, start - 1.5, start - 0.5))  # gaps are 2 s: clear of the 0.5 s release and 0.2 s attack
        assert under == pytest.approx(gap - 12.0, abs=1.0)
    assert result["music"]["under_speech_db"] == pytest.approx(result["music"]["clear_db"] - 12.0, abs=1.0)


def test_music_intro_and_outro_extend_the_programme_with_music_alone(speech, tmp_path):
    path, regions, _ = speech
    noise = np.random.default_rng(3).standard_normal(2 * 32_000).astype(np.float32) * 0.1
    sf.write(tmp_path / "bed.wav", noise, 32_000)  # 2 s, shorter than the programme: it loops (period 1.5 s)
    music = tmp_path / "bed.wav"
    result = finish(path, tmp_path / "out.flac", speech_regions=regions, music_cues=[(0.0, music)],
                    options=FinishOptions(music_intro=3.0, music_outro=2.0, music_fade=0.3), stems=tmp_path / "stems")
    speech_len = sf.info(path).duration
    out, _ = sf.read(tmp_path / "out.flac", dtype="float32")
    assert len(out) == round((speech_len + 5.0) * RATE)
    assert result["offset"] == 3.0
    voice, _ = sf.read(tmp_path / "stems" / "MAYA.wav", dtype="float32")
    assert rms_db(window(voice, 0, 3.0)) < -100  # the intro holds no speech
    bed, _ = sf.read(tmp_path / "stems" / "music.wav", dtype="float32")
    levels = [rms_db(f) for f in window(bed, 0.5, 2.5).reshape(20, -1)]  # across the loop point at 1.5 s: no gap, no bump
    assert max(levels) - min(levels) < 2.0


def test_music_cues_switch_and_stop_the_bed(speech, tmp_path):
    path, regions, _ = speech
    low, high = tone_file(tmp_path / "low.wav", 4.0, 220.0), tone_file(tmp_path / "high.wav", 4.0, 880.0)
    cues = [(0.0, low), (6.0, high), (11.0, None)]
    finish(path, tmp_path / "out.wav", speech_regions=regions, music_cues=cues, options=FinishOptions(music_fade=0.5, duck=0.0), stems=tmp_path / "st")
    bed, _ = sf.read(tmp_path / "st" / "music.wav", dtype="float32")

    def pitch(a: float, b: float) -> float:
        seg = window(bed, a, b)
        return np.argmax(np.abs(np.fft.rfft(seg))) * RATE / len(seg)

    assert pitch(2.0, 5.0) == pytest.approx(220.0, abs=2.0)
    assert pitch(7.0, 10.0) == pytest.approx(880.0, abs=2.0)
    assert rms_db(window(bed, 11.6, len(bed) / RATE)) < -100


@pytest.mark.parametrize("preset,target,ceiling", [("podcast", -16.0, -1.0), ("broadcast", -23.0, -1.0), ("-19", -19.0, -1.0)])
def test_programme_loudness_meets_the_preset(speech, tmp_path, preset, target, ceiling):
    path, regions, _ = speech
    music = tone_file(tmp_path / "bed.wav", 3.0)
    result = finish(path, tmp_path / "out.wav", speech_regions=regions, music_cues=[(0.0, music)], options=FinishOptions(loudness=preset))
    out, rate = sf.read(tmp_path / "out.wav")
    measured = pyln.Meter(rate).integrated_loudness(out)
    assert measured == pytest.approx(target, abs=0.5)
    assert true_peak_db(out) <= ceiling + 0.1
    assert result["loudness"]["integrated_lufs"] == pytest.approx(measured, abs=0.2)


def test_audiobook_preset_meets_acx(speech, tmp_path):
    path, regions, _ = speech
    result = finish(path, tmp_path / "book.wav", speech_regions=regions, options=FinishOptions(loudness="audiobook"))
    out, _ = sf.read(tmp_path / "book.wav")
    assert -23.0 <= rms_db(out) <= -18.0
    assert 20 * np.log10(np.max(np.abs(out))) <= -3.0
    assert result["loudness"]["noise_floor_db"] <= -60.0
    assert result["loudness"]["acx_ok"] is True


def test_twenty_minutes_stream_through_small_blocks_without_losing_a_sample(tmp_path):
    rng = np.random.default_rng(7)
    n = 20 * 60 * RATE
    bursts = np.repeat((rng.random(n // (RATE // 2) + 1) > 0.3).astype(np.float32), RATE // 2)[:n]
    speech = rng.standard_normal(n).astype(np.float32) * 0.05 * bursts
    sf.write(tmp_path / "long.wav", speech, RATE, subtype="FLOAT")
    result = finish(tmp_path / "long.wav", tmp_path / "long.wav.out.wav", speech_regions=[(0.0, n / RATE, "A")],
                    options=FinishOptions(loudness=-20.0, block=16384))
    out, _ = sf.read(tmp_path / "long.wav.out.wav", dtype="float32")
    assert len(out) == n
    gain = 10 ** (result["loudness"]["gain_db"] / 20)
    assert np.max(np.abs(out - np.clip(speech * gain, -1, 1))) < 1e-3  # peaks stay under the ceiling: a pure, seamless gain
    assert pyln.Meter(RATE).integrated_loudness(out[: 5 * 60 * RATE]) == pytest.approx(-20.0, abs=0.5)


def test_shorten_silences_cuts_only_long_pauses():
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(RATE) / RATE)).astype(np.float32)
    gap = lambda s: np.zeros(round(s * RATE), np.float32)  # noqa: E731
    audio = np.concatenate([tone, gap(3.0), tone, gap(0.5), tone])
    out = shorten_silences(audio, RATE, 1.0)
    assert len(out) / RATE == pytest.approx(3.0 + 1.0 + 0.5, abs=0.03)
    assert rms_db(out) > rms_db(audio)
    assert shorten_silences(audio, RATE, 5.0) is audio


@pytest.mark.parametrize("options,message", [
    (FinishOptions(duck=-3.0), "--duck"),
    (FinishOptions(music_gain=40.0), "--music-gain"),
    (FinishOptions(loudness="loud"), "unknown loudness"),
    (FinishOptions(loudness=-90.0), "out of range"),
])
def test_bad_options_fail_before_writing(speech, tmp_path, options, message):
    path, regions, _ = speech
    with pytest.raises(UsageError, match=message):
        finish(path, tmp_path / "out.wav", speech_regions=regions, options=options)
    assert list(tmp_path.iterdir()) == []


def test_bad_music_fails_with_the_fix_and_leaves_nothing(speech, tmp_path):
    path, regions, _ = speech
    (tmp_path / "notes.txt").write_text("not audio")
    sf.write(tmp_path / "silent.wav", np.zeros(RATE * 2, np.float32), RATE)
    tone_file(tmp_path / "blip.wav", 0.5)
    for name, message in (("notes.txt", "not a readable audio file"), ("silent.wav", "silent"), ("blip.wav", "at least 1 s"), ("missing.ogg", "not found")):
        with pytest.raises(UsageError, match=message):
            finish(path, tmp_path / "out.wav", speech_regions=regions, music_cues=[(0.0, tmp_path / name)], stems=tmp_path / "stems")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blip.wav", "notes.txt", "silent.wav"]
