import re
import subprocess

import numpy as np
import pytest
import soundfile as sf

from higgs_cli.containers import FfmpegMissing, bind, ffmpeg_exe, read_blocks
from higgs_cli.errors import UsageError
from higgs_cli.mixing import finish
from higgs_cli.options import FinishOptions

from .audio_fixtures import RATE, png_bytes, speech_track, tone_file


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return speech_track(tmp_path_factory.mktemp("speech"), gap=0.5)


def ffmetadata(path):
    """Tags and chapters as ffmpeg itself reads them back (independent of our own parser)."""
    text = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"], capture_output=True, text=True, check=True).stdout
    head, *chapters = text.split("[CHAPTER]")
    tags = dict(line.split("=", 1) for line in head.splitlines()[1:] if "=" in line)
    return tags, [_seconds(dict(line.split("=", 1) for line in c.strip().splitlines())) for c in chapters]


def _seconds(chapter):
    num, den = (int(x) for x in chapter["TIMEBASE"].split("/"))
    return {**chapter, "START": int(chapter["START"]) * num / den, "END": int(chapter["END"]) * num / den}


def has_cover(path):
    info = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return bool(re.search(r"Video: (mjpeg|png).*\(attached pic\)", info))


def test_m4b_carries_chapters_metadata_and_cover(speech, tmp_path):
    path, regions, _ = speech
    (tmp_path / "cover.png").write_bytes(png_bytes())
    chapters = [("Opening", 0.0, regions[1][0]), ("The fog", regions[1][0], sf.info(path).duration)]
    options = FinishOptions(loudness="audiobook", title="Harbour Tales", author="A. Writer", cover=tmp_path / "cover.png")
    result = finish(path, tmp_path / "book.m4b", speech_regions=regions, options=options, chapters=chapters)
    tags, back = ffmetadata(tmp_path / "book.m4b")
    assert tags["title"] == "Harbour Tales" and tags["artist"] == "A. Writer" and tags["genre"] == "Audiobook"
    assert [c["title"] for c in back] == ["Opening", "The fog"]
    assert [c["START"] for c in back] == pytest.approx([0.0, regions[1][0]], abs=0.001)
    assert has_cover(tmp_path / "book.m4b")
    assert result["duration"] == pytest.approx(sf.info(path).duration, abs=0.05)
    assert result["loudness"]["true_peak_dbtp"] <= -3.0  # measured on the decoded AAC


def test_bind_makes_one_chapter_per_file(speech, tmp_path):
    path, _, _ = speech
    second = tone_file(tmp_path / "part two.flac", 2.5)
    (tmp_path / "cover.jpg").write_bytes(png_bytes())  # PNG content behind a .jpg name is still an image
    result = bind([path, second], tmp_path / "book.m4b", title="Two Parts", author="B", cover=tmp_path / "cover.jpg")
    first_len = sf.info(path).duration
    assert [c["title"] for c in result["chapters"]] == ["speech", "part two"]
    tags, back = ffmetadata(tmp_path / "book.m4b")
    assert tags["album"] == "Two Parts"
    assert [c["END"] for c in back] == pytest.approx([first_len, first_len + 2.5], abs=0.001)
    decoded = np.concatenate(list(read_blocks(tmp_path / "book.m4b")))
    assert len(decoded) / RATE == pytest.approx(first_len + 2.5, abs=0.05)
    assert has_cover(tmp_path / "book.m4b")


def test_bind_to_wav_joins_audio(speech, tmp_path):
    path, _, _ = speech
    result = bind([path, path], tmp_path / "both.wav", chapter_titles=["One", "Two"])
    assert sf.info(tmp_path / "both.wav").frames == 2 * sf.info(path).frames
    assert result["chapters"][1]["title"] == "Two"


@pytest.mark.parametrize("kwargs,message", [
    ({"cover": "notes.jpg"}, "not a JPEG or PNG"),
    ({"chapter_titles": ["One", "  "]}, "chapter 2 has no title"),
    ({"chapter_titles": ["Only one"]}, "one title per input"),
])
def test_bind_rejects_bad_input_and_leaves_nothing(speech, tmp_path, kwargs, message):
    path, _, _ = speech
    (tmp_path / "notes.jpg").write_text("not an image")
    if "cover" in kwargs:
        kwargs = {"cover": tmp_path / kwargs["cover"]}
    with pytest.raises(UsageError, match=message):
        bind([path, path], tmp_path / "book.m4b", **kwargs)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.jpg"]


def test_m4b_without_ffmpeg_names_the_fix(speech, tmp_path, monkeypatch):
    path, regions, _ = speech
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FfmpegMissing, match="imageio-ffmpeg"):
        finish(path, tmp_path / "book.m4b", speech_regions=regions)
    assert list(tmp_path.iterdir()) == []
