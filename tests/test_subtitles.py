import re

import pytest

from higgs_cli.errors import UsageError
from higgs_cli.subtitles import chunk_cues, write_subtitles

CHUNKS = [
    {"speaker": "MAYA", "text": "If the boat doesn't sail tomorrow, I'm swimming. <SE>[Laughter]</SE>", "start": 0.0, "end": 2.88},
    {"speaker": "TOM", "text": "You said that yesterday.", "start": 3.33, "end": 4.9},
    {"speaker": "MAYA", "text": " ".join(["word"] * 30) + ". And then, at last, the ferry sailed out past the harbour wall into the grey.", "start": 5.6, "end": 19.6},
]


def stamps(text, sep):
    pattern = rf"(\d\d):(\d\d):(\d\d){sep}(\d\d\d) --> (\d\d):(\d\d):(\d\d){sep}(\d\d\d)"
    out = []
    for m in re.finditer(pattern, text):
        v = [int(x) for x in m.groups()]
        out.append((v[0] * 3600 + v[1] * 60 + v[2] + v[3] / 1000, v[4] * 3600 + v[5] * 60 + v[6] + v[7] / 1000))
    return out


def test_srt_cues_follow_chunk_timings_and_name_speakers(tmp_path):
    n = write_subtitles(CHUNKS, tmp_path / "s.srt")
    text = (tmp_path / "s.srt").read_text()
    times = stamps(text, ",")
    assert len(times) == n >= 4
    assert times[0] == (0.0, 2.88) and times[1] == (3.33, 4.9)
    long = times[2:]
    assert long[0][0] == 5.6 and long[-1][1] == 19.6
    assert all(a[1] == b[0] for a, b in zip(long, long[1:]))  # contiguous, nothing dropped
    assert "MAYA: If the boat" in text and "TOM: You said" in text and "Laughter" not in text


def test_vtt_uses_voice_spans_and_dots(tmp_path):
    write_subtitles(CHUNKS, tmp_path / "s.vtt", offset=2.0)
    text = (tmp_path / "s.vtt").read_text()
    assert text.startswith("WEBVTT")
    assert stamps(text, r"\.")[1] == (5.33, 6.9)
    assert "<v TOM>You said that yesterday." in text


def test_long_chunks_split_by_words_in_proportion():
    cues = chunk_cues("A", " ".join(f"w{i}" for i in range(40)), 10.0, 30.0, max_chars=60)
    words = [len(c.text.split()) for c in cues]
    assert sum(words) == 40 and len(cues) >= 3
    for cue, count in zip(cues, words):
        assert cue.end - cue.start == pytest.approx(20.0 * count / 40)
    assert " ".join(c.text for c in cues) == " ".join(f"w{i}" for i in range(40))


def test_bad_requests_name_the_fix(tmp_path):
    with pytest.raises(UsageError, match="use .srt or .vtt"):
        write_subtitles(CHUNKS, tmp_path / "s.txt")
    with pytest.raises(UsageError, match="no timings"):
        write_subtitles([{"speaker": "A", "text": "Hi."}], tmp_path / "s.srt")
    assert list(tmp_path.iterdir()) == []
