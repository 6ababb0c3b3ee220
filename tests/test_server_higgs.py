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
    from higgs_cli.voices import user_voices_dir

    folder = user_voices_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "calm.yaml").write_text("description: calm, low voice\ngender: masculine\n")
    (folder / "bright.yaml").write_text("description: bright, quick voice\ngender: feminine\n")


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
