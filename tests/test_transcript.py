from pathlib import Path

import pytest

from higgs_cli.errors import TranscriptError
from higgs_cli.transcript import decode_transcript, normalise_line, parse_transcript, plain_text, read_transcript


def test_speakers_numeric_order_and_named_speakers():
    script = parse_transcript("[SPEAKER10] Ten.\n[SPEAKER2] Two.\n[MAYA] Hi.\n[SPEAKER0] Zero.")
    assert script.speakers == ("SPEAKER0", "SPEAKER2", "SPEAKER10", "MAYA")


def test_untagged_text_goes_to_default_speaker_and_lines_continue_turns():
    script = parse_transcript("Once upon a time.\n[MAYA] Hello\nthere.\n\nSecond paragraph.\n[NARRATOR] End")
    assert [(s.speaker, s.text, s.line) for s in script.segments] == [
        ("NARRATOR", "Once upon a time.", 1),
        ("MAYA", "Hello there.", 2),
        ("MAYA", "Second paragraph.", 5),
        ("NARRATOR", "End.", 6),
    ]
    # paragraphs of one speaker share a turn; a speaker change starts a new one
    assert [s.turn for s in script.segments] == [0, 1, 1, 2]


def test_sound_event_lines_are_not_speakers():
    script = parse_transcript("[laugh] That was funny\n[music start] la la [music end]")
    assert script.speakers == ("NARRATOR",)
    assert script.segments[0].text == (
        "<SE>[Laughter]</SE> That was funny <SE_s>[Music]</SE_s> la la <SE_e>[Music]</SE_e>"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("你好，世界。", "你好, 世界."),
        ("It is 20°C (warm) today", "It is 20 degrees Celsius warm today"),
        ("“Quote”…", '"Quote"...'),
        ("a   b\tc", "a b c"),
        ("[humming start] hm [humming end]", "<SE_s>[Humming]</SE_s> hm <SE_e>[Humming]</SE_e>"),
        ("[cough] [applause] [cheering]", "<SE>[Cough]</SE> <SE>[Applause]</SE> <SE>[Cheering]</SE>"),
    ],
)
def test_normalise_line_matches_upstream(raw, expected):
    assert normalise_line(raw) == expected


def test_final_punctuation_added_per_paragraph_only_when_missing():
    script = parse_transcript("no stop\n\nhas one!\n\n[music start] x [music end]")
    assert [s.text for s in script.segments] == ["no stop.", "has one!", "<SE_s>[Music]</SE_s> x <SE_e>[Music]</SE_e>"]


def test_bom_and_crlf(tmp_path: Path):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeff[SPEAKER0] Hello.\r\n\r\n[SPEAKER1] Hi.\r\n".encode())
    script = read_transcript(path)
    assert [s.text for s in script.segments] == ["Hello.", "Hi."]
    assert script.segments[1].line == 3


@pytest.mark.parametrize(
    ("data", "fragment", "line"),
    [
        (b"", "no text", None),
        (b"   \n\t\n", "no text", None),
        (b"\x00\x01\x02binary", "binary", None),
        (b"ok line\ncaf\xe9\n", "UTF-8", 2),
        (b"[SPEAKER0]\n[SPEAKER1] hi", "no text", 1),
        (b"[SPEAKER0] hi\n[SPEAKER1]\n", "no text", 2),
    ],
)
def test_bad_transcripts_name_file_line_and_fix(tmp_path: Path, data, fragment, line):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(TranscriptError) as info:
        read_transcript(path)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: " if line else f"{path}: ")


def test_missing_file(tmp_path: Path):
    with pytest.raises(TranscriptError, match="not found"):
        read_transcript(tmp_path / "nope.txt")


def test_tag_on_its_own_line_followed_by_text_is_fine():
    script = parse_transcript("[MAYA]\nHello there.")
    assert script.segments[0].speaker == "MAYA" and script.segments[0].text == "Hello there."


def test_plain_text_drops_markup_for_cpu_engines():
    assert plain_text("<SE>[Laughter]</SE> Hi [pause] there <SE_e>[Music]</SE_e>") == "Hi there"


def test_decode_rejects_latin1_with_encoding_hint():
    with pytest.raises(TranscriptError, match="must be UTF-8"):
        decode_transcript("é".encode("latin-1"))


def test_reference_transcripts_parse(reference: Path):
    for path in sorted((reference / "transcript").rglob("*.txt")):
        script = read_transcript(path)
        assert script.segments, path
    multi = read_transcript(reference / "transcript" / "multi_speaker" / "en_higgs.txt")
    assert multi.speakers == ("SPEAKER0", "SPEAKER1")
