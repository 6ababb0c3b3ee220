from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from higgs_cli import voices
from higgs_cli.errors import UsageError, VoiceError
from higgs_cli.options import BUNDLED_VOICES_DIR, SAMPLE_RATE


def speech_clip(path: Path, seconds_of_silence: float = 0.5, rate: int = 44_100, stereo: bool = True) -> Path:
    """A real spoken clip (eSpeak), padded with silence, at another rate and in stereo."""
    from higgs_cli.engines import ChunkRequest, create

    engine = create("espeak")
    text = "This is a short recording of my voice, made for a test of the voice library."
    speech = engine.synthesize(ChunkRequest(0, "X", text, voices.resolve("joe"), 0)).audio
    from higgs_cli.audio import resample, silence

    pad = silence(seconds_of_silence, SAMPLE_RATE)
    audio = resample(np.concatenate([pad, speech, pad]), SAMPLE_RATE, rate)
    sf.write(path, np.stack([audio, audio], 1) if stereo else audio, rate)
    return path


def test_bundled_voices_are_complete():
    names = [v.name for v in voices.library() if v.source == "bundled"]
    assert len(names) >= 4
    for name in names:
        v = voices.resolve(name)
        assert v.transcript and v.description and v.gender
        info = sf.info(str(v.clip))
        assert info.channels == 1 and info.samplerate == SAMPLE_RATE and 3 <= info.duration <= 30
        assert "piper" in v.engines and "espeak" in v.engines


@pytest.mark.parametrize("name", ["../joe", "..", "a/../../etc/passwd", "Joe", "", ".hidden", "x" * 65, "a b"])
def test_names_cannot_escape_the_voice_folder(name):
    with pytest.raises(VoiceError):
        voices.check_name(name)


def test_path_like_specs_must_exist():
    with pytest.raises(VoiceError, match="not found"):
        voices.resolve("../../etc/nothing.wav")


def test_add_normalises_clip_and_remove_deletes_it(tmp_path):
    clip = speech_clip(tmp_path / "me.wav")
    voice = voices.add("me", clip, "This is a short recording of my voice.", gender="neutral")
    assert voice.source == "user" and voice.transcript.startswith("This is")
    info = sf.info(str(voice.clip))
    assert info.channels == 1 and info.samplerate == SAMPLE_RATE
    assert info.duration < sf.info(str(clip)).duration - 0.5  # leading/trailing silence trimmed
    assert voice.clip.parent == voices.user_voices_dir()
    with pytest.raises(VoiceError, match="already exists"):
        voices.add("me", clip, "again")
    assert voices.remove("me") and not voice.clip.exists()


def test_add_rejects_short_corrupt_and_silent_clips(tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, np.sin(np.linspace(0, 2000, SAMPLE_RATE)).astype(np.float32) * 0.5, SAMPLE_RATE)
    with pytest.raises(VoiceError, match="3-30 s"):
        voices.add("short", short, "hi")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(UsageError, match="not a readable audio file"):
        voices.add("corrupt", corrupt, "hi")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SAMPLE_RATE * 5, np.float32), SAMPLE_RATE)
    with pytest.raises(VoiceError):
        voices.add("silent", silent, "hi")
    assert not any(voices.user_voices_dir().glob("*.wav")) if voices.user_voices_dir().exists() else True


def test_bundled_voices_cannot_be_removed():
    with pytest.raises(VoiceError, match="bundled"):
        voices.remove("joe")


def test_bundled_dir_is_in_the_repo():
    assert BUNDLED_VOICES_DIR.name == "voices" and (BUNDLED_VOICES_DIR / "joe.wav").is_file()
