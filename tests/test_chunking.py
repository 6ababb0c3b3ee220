import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from higgs_cli.chunking import _turns, chunk_script, count_words, split_text
from higgs_cli.errors import UsageError
from higgs_cli.transcript import Script, Segment, normalise_line, parse_transcript

WORDS = st.sampled_from(["alpha", "beta,", "gamma.", "delta!", "eps?", "zeta;", "eta:", "theta", "-", "你好。", "世界，",
                         "[laugh]", "[music start]", "[music end]", "[pause]", "[pause:1.5]", "[music: a.ogg]", "longlonglonglonglonglonglonglongword", "é", "'quoted'"])
TEXTS = st.lists(WORDS, min_size=1, max_size=120).map(lambda ws: normalise_line(" ".join(ws))).filter(bool)


def units(script: Script, method: str) -> list[str]:
    if method in ("speaker", "none"):
        return [" ".join(s.text for _, s in group) for group in _turns(enumerate(script.segments))]
    return [s.text for s in script.segments]


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(paragraphs=st.lists(st.tuples(st.sampled_from(["A", "B"]), TEXTS), min_size=1, max_size=5),
       method=st.sampled_from(["speaker", "paragraph", "sentence", "none"]), budget=st.integers(1, 40))
def test_chunks_rejoin_to_the_normalised_input(paragraphs, method, budget):
    text = "\n\n".join(f"[{spk}] {body} end." for spk, body in paragraphs)  # every paragraph has words
    script = parse_transcript(text)
    chunks = chunk_script(script, method, budget)
    rebuilt, unit = [], ""
    for i, c in enumerate(chunks):
        unit += c.lead + c.text + c.tail
        last = i == len(chunks) - 1 or chunks[i + 1].paragraph != c.paragraph
        if last:
            rebuilt.append(unit)
            unit = ""
    assert rebuilt == units(script, method)
    assert all(c.text and c.text == c.text.strip() and "[pause" not in c.text for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))


@given(text=TEXTS, budget=st.integers(1, 30))
@settings(max_examples=150, deadline=None)
def test_sound_event_pairs_are_never_separated(text, budget):
    pieces = split_text(text, budget)
    for pair in re.finditer(r"<SE_s>\[Music\]</SE_s>.*?<SE_e>\[Music\]</SE_e>", text):
        assert any(a <= pair.start() and pair.end() <= b for a, b in pieces), (pair.group(0), pieces)
    for tag in re.finditer(r"<SE[^>]*>\[[^\]]*\]</SE[^>]*>", text):  # no cut inside a tag
        assert any(a <= tag.start() and tag.end() <= b for a, b in pieces)


def test_sentence_ends_are_preferred_over_clauses():
    text = "One two three four. Five six, seven eight. Nine ten eleven twelve."
    pieces = [text[a:b].strip() for a, b in split_text(text, 8)]
    assert pieces == ["One two three four. Five six, seven eight.", "Nine ten eleven twelve."]


def test_long_sentence_splits_at_clauses_then_words():
    text = "one two three, four five six, seven eight nine ten eleven twelve thirteen fourteen."
    pieces = [text[a:b].strip() for a, b in split_text(text, 4)]
    assert pieces[:2] == ["one two three,", "four five six,"]
    assert all(count_words(p) <= 4 for p in pieces)
    assert " ".join(pieces) == text


def test_methods():
    script = parse_transcript("[A] One. Two.\n\nThree.\n[B] Four. Five.")
    assert [c.text for c in chunk_script(script, "none", 1)] == ["One. Two. Three.", "Four. Five."]
    assert [c.text for c in chunk_script(script, "speaker", 60)] == ["One. Two. Three.", "Four. Five."]
    assert [c.text for c in chunk_script(script, "paragraph", 60)] == ["One. Two.", "Three.", "Four. Five."]
    assert [c.text for c in chunk_script(script, "sentence", 60)] == ["One.", "Two.", "Three.", "Four.", "Five."]
    with pytest.raises(UsageError):
        chunk_script(script, "words", 10)


def test_cjk_text_is_split_at_cjk_sentence_ends_and_characters():
    script = parse_transcript("大家好，欢迎收听本期节目。今天我们聊一聊多模态学习。这是一个很长的句子没有任何标点符号但是必须被切开才能合成")
    chunks = chunk_script(script, "paragraph", 12)
    assert all(c.words <= 12 for c in chunks)
    assert chunks[0].text.endswith(".")
    assert "".join(c.text + c.tail for c in chunks) == script.segments[0].text


def test_one_megabyte_line_is_chunked_quickly():
    line = ("The quick brown fox jumps over the lazy dog again and again, " * 17000)[:1_000_000]
    script = Script((Segment("NARRATOR", line, 1, 0),), ("NARRATOR",))
    started = time.monotonic()
    chunks = chunk_script(script, "paragraph", 60)
    assert time.monotonic() - started < 20
    assert "".join(c.text + c.tail for c in chunks) == line
    assert max(c.words for c in chunks) <= 60


def test_a_megabyte_without_spaces_is_hard_split():
    blob = "x" * 1_000_000
    pieces = split_text(blob, 60)
    assert "".join(blob[a:b] for a, b in pieces) == blob
    assert max(count_words(blob[a:b]) for a, b in pieces) <= 60


def test_reference_chinese_transcript(reference):
    from higgs_cli.transcript import read_transcript

    script = read_transcript(reference / "transcript" / "single_speaker" / "zh_ai.txt")
    chunks = chunk_script(script, "paragraph", 40)
    assert sum(len(c.text) + len(c.tail) for c in chunks) == sum(len(s.text) for s in script.segments)


def test_pause_and_music_tags_end_chunks_and_are_never_spoken():
    script = parse_transcript("[pause:0.5] Hello there. [pause] Again [pause:2.5]\n\n[music: bed.ogg] Intro. [music off]")
    chunks = chunk_script(script, "paragraph", 60)
    assert [c.text for c in chunks] == ["Hello there.", "Again.", "Intro."]
    assert [p.seconds for p in chunks[0].controls_before] == [0.5]
    assert [p.seconds for p in chunks[0].controls_after] == [1.0]
    assert [p.seconds for p in chunks[1].controls_after] == [2.5]
    assert chunks[2].controls_before[0].music == "bed.ogg" and chunks[2].controls_after[0].music is None
