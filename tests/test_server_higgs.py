"""`higgs serve --engine higgs` on a tiny random checkpoint (CPU): concurrent requests share one batched decoder
(rows filled from different requests' chains), and each still gets exactly the audio a CLI render of its plan gives."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("torch")
pytest.importorskip("transformers")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from higgs_cli.options import HiggsSettings, ServeOptions  # noqa: E402

from .test_server import Server  # noqa: E402

REQUESTS = [
    {"input": "[CALM] The tide is out.\n[BRIGHT] Then we walk to the island!", "voice": "calm", "voices": {"CALM": "calm", "BRIGHT": "bright"}},
    {"input": "The lamp was lit at dusk. It burned all night.", "voice": "joe"},
]


@pytest.fixture
def voices():
    from .helpers import add_calm_and_bright_voices

    add_calm_and_bright_voices()


@pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
def test_concurrent_requests_share_the_batch_and_match_the_cli(voices, tmp_path):
    from higgs_cli.cache import ChunkCache
    from higgs_cli.pipeline import render
    from higgs_cli.server_requests import build_plan, parse

    from .higgs_tiny import hub_dirs

    model, codec = hub_dirs()
    higgs = HiggsSettings(model=str(model), codec=str(codec), device="cpu", max_new_tokens=16, batch=4)
    options = ServeOptions(engine="higgs", workers=1, max_concurrent=4, timeout=300, no_cache=True, higgs=higgs)
    with Server(options) as s:
        client = s.client(key=None)

        def ask(body: dict) -> bytes:
            extra = {k: v for k, v in body.items() if k not in ("input", "voice")}  # our extensions ride in extra_body
            return client.audio.speech.create(model="higgs", input=body["input"], voice=body["voice"], response_format="wav",
                                              extra_body=extra).content

        with ThreadPoolExecutor(len(REQUESTS)) as pool:
            answers = list(pool.map(ask, REQUESTS))
        stats = httpx.get(f"{s.url}/health").json()["batch"]
        refused = s.post({"model": "higgs", "input": "Hi.", "voice": "joe", "temperature": 0.5}, key=None)
    assert refused.status_code == 400 and "samples every request" in refused.json()["error"]["message"]
    assert stats["max_jobs_in_a_run"] >= 2  # rows of one decoding run served different requests
    for body, answer in zip(REQUESTS, answers, strict=True):
        plan, _ = build_plan(parse({"model": "higgs", **body}), options, tmp_path)
        plan = replace(plan, options=replace(plan.options, higgs=replace(plan.options.higgs, batch=1)))
        out = tmp_path / "cli.wav"
        render(plan, out, cache=ChunkCache(None))  # one request alone, chunk after chunk (transformers' generate)
        expected, _ = sf.read(out, dtype="float32")
        got, rate = sf.read(io.BytesIO(answer), dtype="float32")
        assert rate == 24000 and got.size > 0 and np.array_equal(got, expected)


@pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
def test_the_shared_batch_retakes_a_chunk_and_renders_what_heard_it_again(tmp_path, monkeypatch):
    """The server's gate over the shared batch (no HTTP: the scheduler and the gate the server uses). Every take
    fails (a `silent` limit above any audio: equal scores, so the first take heard is kept). Chunk 0 is first moved
    to take 1 through the hook the gate retakes with (as a hand retake would), then the gate retakes it (take 2) and
    keeps take 1; chunk 1, whose context held take 0, is rendered again in take 1's context, then retaken. Each kept
    chunk equals a one-by-one render of the kept seeds."""
    import time

    import higgs_cli.options as o
    from higgs_cli.cache import ChunkCache
    from higgs_cli.options import QaOptions, RenderOptions
    from higgs_cli.pipeline import render
    from higgs_cli.planning import chunk_keys, make_plan
    from higgs_cli.server_qa import ServerGate
    from higgs_cli.server_requests import with_kept_takes
    from higgs_cli.serving import scheduler
    from higgs_cli.transcript import parse_transcript

    from .higgs_tiny import hub_dirs

    monkeypatch.setattr(o, "QA_SILENT_DB", 20.0)
    model, codec = hub_dirs()
    higgs = HiggsSettings(model=str(model), codec=str(codec), device="cpu", max_new_tokens=16, batch=2)
    plan = make_plan(parse_transcript("[SPEAKER0] The sun rises in the east. Hello there.\n"),
                     RenderOptions(engine="higgs", chunk="sentence", voices={"SPEAKER0": "ava"}, higgs=higgs), "higgs")
    store = ChunkCache(tmp_path / "served")
    plan, takes = with_kept_takes(plan, store)
    sched = scheduler("higgs", higgs, workers=1, max_running=2, max_waiting=2)
    sched.start()
    try:
        job = sched.submit(plan, store)
        gated = ServerGate(QaOptions(mode="retake", retakes=1), "higgs", higgs).for_job(job, sched, takes)
        gated.deadline = time.monotonic() + 240
        job.wait(0, gated.deadline)
        gated.take(0, 1)  # rendered by the shared batch, in a job of its own
        gated.settle_all(gated.deadline)
        sched.release(job)
    finally:
        sched.close()
    assert [(r["take"], r["takes"], r["passed"]) for r in gated.rows] == [(1, 3, False), (0, 2, False)], gated.rows
    assert gated.keys[0] != job.keys[0] and gated.keys[1] != job.keys[1]  # chunk 1's context changed with chunk 0's take

    kept = replace(plan, seeds=gated.plan.seeds, options=replace(plan.options, higgs=replace(higgs, batch=1)))
    render(kept, tmp_path / "cli.wav", cache=ChunkCache(tmp_path / "cli"))  # chunk after chunk, the kept seeds from the start
    assert chunk_keys(kept) == gated.keys
    for key in gated.keys:
        assert np.array_equal(store.get(key).audio, ChunkCache(tmp_path / "cli").get(key).audio)
