"""`higgs serve`: a real uvicorn server on a free loopback port, called with the official `openai` client (and httpx
for what that client has no method for). The engine is Piper on short text, so every request renders for real."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from higgs_cli.options import ServeOptions  # noqa: E402

KEY = "test-key-123"
TWO_SENTENCES = "The first sentence is here. The second one follows it.\n\nA new paragraph makes a third chunk."


class Server:
    """uvicorn serving create_app(options) on a thread; the access log goes to a list of dicts."""

    def __init__(self, options: ServeOptions, sched: object = None):
        import uvicorn

        from higgs_cli.server import create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.options = replace(options, port=port)
        self.log = _Lines()
        self.app = create_app(self.options, sched, log_stream=self.log)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def client(self, key: str | None = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or "none", max_retries=0, timeout=120)

    def post(self, body: dict | bytes, key: str | None = KEY, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if isinstance(body, dict):
            return httpx.post(f"{self.url}/v1/audio/speech", json=body, headers=headers, timeout=120, **kw)
        return httpx.post(f"{self.url}/v1/audio/speech", content=body, headers={**headers, "Content-Type": "application/json"},
                          timeout=120, **kw)


class _Lines(io.StringIO):
    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.getvalue().splitlines() if line.strip()]


def piper_pool(workers: int):
    """A started Piper worker pool (two requests running, two waiting) that closes when the generator ends."""
    from higgs_cli.serving import scheduler

    sched = scheduler("piper", None, workers=workers, max_running=2, max_waiting=2)
    sched.start()
    yield sched
    sched.close()


@pytest.fixture(scope="module")
def pool():
    """Two warm Piper engines, loaded once for every server in this module."""
    yield from piper_pool(2)


@pytest.fixture(scope="module")
def server(tmp_path_factory, pool):
    root = tmp_path_factory.mktemp("serve")
    options = ServeOptions(engine="piper", api_key=KEY, max_input_chars=400, max_body_bytes=2 << 20, timeout=60,
                           cache_dir=root / "cache")
    with Server(options, pool) as s:
        yield s


@pytest.fixture
def one_place(pool):
    """The shared engines admitting one request at a time, none waiting."""
    pool.max_running, pool.max_waiting = 1, 0
    yield pool
    pool.max_running, pool.max_waiting = 2, 2


def _wav(data: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    return audio, rate


def test_whole_wav_equals_the_cli_render_and_mp3_decodes(server, tmp_path):
    from typer.testing import CliRunner

    from higgs_cli.cli import app

    speech = server.client().audio.speech.create(model="tts-1", voice="joe", input=TWO_SENTENCES, response_format="wav")
    audio, rate = _wav(speech.content)
    out = tmp_path / "cli.wav"
    result = CliRunner().invoke(app, ["generate", "--text", TWO_SENTENCES, "-e", "piper", "-v", "joe", "-o", str(out), "--no-cache", "-q"])
    assert result.exit_code == 0, result.output
    cli, cli_rate = sf.read(out, dtype="float32")
    assert rate == cli_rate == 24000 and np.array_equal(audio, cli)  # the same pipeline, sample for sample
    mp3 = server.client().audio.speech.create(model="piper", voice="joe", input=TWO_SENTENCES, response_format="mp3")
    assert mp3.content[:3] == b"ID3" or mp3.content[0] == 0xFF
    path = tmp_path / "x.mp3"
    path.write_bytes(mp3.content)
    decoded, _ = sf.read(path, dtype="float32")
    assert abs(len(decoded) - len(audio)) < 0.1 * rate  # mp3 padding only


def test_streamed_audio_arrives_in_pieces_before_the_render_ends(server):
    text = "\n\n".join(f"Paragraph number {n} is spoken here, as a chunk of its own." for n in range(1, 5))
    body = {"model": "tts-1", "voice": "joe", "input": text, "response_format": "pcm", "stream_format": "audio", "seed": 7}
    arrivals = []
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
        for block in r.iter_raw():
            arrivals.append((time.monotonic(), len(block)))
    total = sum(n for _, n in arrivals)
    assert total % 2 == 0 and total > 24000 * 2 * 3  # > 3 s of s16 at 24 kHz
    # several pieces, and the first came well before the last: chunks stream as they finish
    assert len(arrivals) >= 3
    assert arrivals[-1][0] - arrivals[0][0] > 0.3


def test_sse_events_carry_the_same_audio_as_the_stream(server):
    body = {"model": "tts-1", "voice": "joe", "input": TWO_SENTENCES, "response_format": "pcm", "stream_format": "sse"}
    r = server.post(body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1) and len(events) >= 3
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] == len(TWO_SENTENCES.split())
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    plain = server.post({**body, "stream_format": "audio"}).content
    assert pcm == plain


def test_a_dialogue_transcript_gets_one_voice_per_speaker(server):
    text = "[MAYA] Did you hear the news today?\n[OWEN] No, tell me everything.\n[MAYA] The bridge is finally open."
    r = server.post({"model": "tts-1", "input": text, "voices": {"MAYA": "joe", "owen": "ava"}, "response_format": "wav"})
    assert r.status_code == 200, r.text
    audio, rate = _wav(r.content)
    assert len(audio) / rate > 3
    assert r.headers["X-Higgs-Voices"] == "MAYA=joe, OWEN=ava"
    assert r.headers["X-Higgs-Chunks"] == "3"  # one chunk per turn, as `higgs dialogue` chunks it


def test_voice_library_upload_list_use_delete(server, tmp_path):
    from higgs_cli.options import BUNDLED_VOICES_DIR

    clip = (BUNDLED_VOICES_DIR / "nell.wav").read_bytes()
    client = server.client()
    made = client.audio.voices.create(name="narrator-x", audio_sample=("clip.wav", clip, "audio/wav"), consent="n/a",
                                      extra_body={"transcript": "Words spoken in the clip."})
    assert made.id == "narrator-x" and made.object == "audio.voice"
    listed = httpx.get(f"{server.url}/v1/audio/voices", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
    assert "narrator-x" in [v["id"] for v in listed] and {"ava", "joe"} <= {v["id"] for v in listed}
    again = httpx.post(f"{server.url}/v1/audio/voices", headers={"Authorization": f"Bearer {KEY}"},
                       data={"name": "narrator-x", "transcript": "x"}, files={"audio_sample": ("a.wav", clip, "audio/wav")})
    assert again.status_code == 409
    short = io.BytesIO()
    sf.write(short, np.zeros(24000, np.float32), 24000, format="WAV")
    bad = httpx.post(f"{server.url}/v1/audio/voices", headers={"Authorization": f"Bearer {KEY}"},
                     data={"name": "tiny", "transcript": "x"}, files={"audio_sample": ("a.wav", short.getvalue(), "audio/wav")})
    assert bad.status_code == 400 and "3-30 s" in bad.json()["error"]["message"]  # the same checks as `higgs voices add`
    assert server.post({"model": "tts-1", "voice": "narrator-x", "input": "Hello from the new voice."}).status_code == 200
    deleted = client.audio.voices.delete("narrator-x")
    assert deleted.deleted and deleted.id == "narrator-x"
    assert server.post({"model": "tts-1", "voice": "narrator-x", "input": "Gone."}).status_code == 400
    gone = httpx.delete(f"{server.url}/v1/audio/voices/narrator-x", headers={"Authorization": f"Bearer {KEY}"})
    assert gone.status_code == 404 and gone.json()["error"]["message"]
    bundled = httpx.delete(f"{server.url}/v1/audio/voices/ava", headers={"Authorization": f"Bearer {KEY}"})
    assert bundled.status_code == 403


def test_form_bodies_work_like_json_and_an_uploaded_clip_needs_a_cloning_engine(server):
    from higgs_cli.options import BUNDLED_VOICES_DIR

    fields = {"model": "tts-1", "input": "Form fields work too.", "voice": "joe", "response_format": "pcm", "seed": "3"}
    auth = {"Authorization": f"Bearer {KEY}"}
    form = httpx.post(f"{server.url}/v1/audio/speech", data=fields, headers=auth, timeout=120)
    assert form.status_code == 200 and form.content == server.post({**fields, "seed": 3}).content
    clip = (BUNDLED_VOICES_DIR / "nell.wav").read_bytes()
    upload = httpx.post(f"{server.url}/v1/audio/speech", data={**fields, "ref_text": "Words in the clip."}, headers=auth,
                        files={"ref_audio": ("me.wav", clip, "audio/wav")}, timeout=120)
    assert upload.status_code == 400 and upload.json()["error"]["param"] == "ref_audio"
    assert "needs the higgs engine" in upload.json()["error"]["message"]


def test_concurrent_clients_all_get_their_own_audio(server):
    texts = [f"Client number {n} asked for this sentence." for n in range(4)]
    client = server.client()

    def ask(text: str) -> bytes:
        return client.audio.speech.create(model="tts-1", voice="joe", input=text, response_format="wav").content

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(ask, texts))
    lengths = [len(_wav(r)[0]) for r in results]
    assert all(n > 24000 for n in lengths) and len({r for r in results}) == 4
    assert _wav(results[2])[0].tolist() == _wav(ask(texts[2]))[0].tolist()  # same request, same samples (cached or not)


@pytest.mark.parametrize("body, status, param", [
    ({"model": "tts-1", "input": "Hi.", "voice": "ava", "volume": 3}, 400, "volume"),  # unknown field refused
    ({"model": "tts-1", "input": "Hi.", "voice": "ava", "speed": 3.0}, 400, "speed"),
    ({"model": "tts-1", "input": "Hi.", "voice": "ava", "temperature": 9}, 400, "temperature"),
    ({"model": "tts-1", "input": "Hi.", "voice": "ava", "top_k": 500}, 400, "top_k"),
    ({"model": "tts-1", "input": "Hi.", "voice": "ava", "response_format": "ogg"}, 400, "response_format"),
    ({"model": "tts-1", "input": "Hi.", "voice": "../../etc/passwd"}, 400, "voice"),
    ({"model": "tts-1", "input": "Hi.", "voice": "nobody"}, 400, "voice"),
    ({"model": "dall-e-3", "input": "Hi.", "voice": "ava"}, 400, "model"),
    ({"model": "tts-1", "input": "x" * 401, "voice": "ava"}, 400, "input"),
    ({"model": "tts-1", "input": "   ", "voice": "ava"}, 400, "input"),
    ({"model": "tts-1", "input": "Hi.", "voice": "ava", "ref_audio": "AAAA", "ref_text": "hi"}, 400, "ref_audio"),
    ({"model": "tts-1", "input": "[A] Hi.", "voices": {"B": "ava"}}, 400, "voices"),
])
def test_bad_requests_are_refused_in_openais_envelope(server, body, status, param):
    r = server.post(body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if param:
        assert error["param"] == param
    assert server.post({"model": "tts-1", "input": "Still here.", "voice": "joe", "response_format": "pcm"}).status_code == 200


def test_auth_size_and_json_refusals_then_still_serving(server):
    assert server.post({"model": "tts-1", "input": "Hi.", "voice": "ava"}, key=None).status_code == 401
    wrong = server.post({"model": "tts-1", "input": "Hi.", "voice": "ava"}, key="wrong-key")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        server.client(key="nope").audio.speech.create(model="tts-1", voice="ava", input="Hi.")
    assert server.post(b"{not json").status_code == 400
    assert server.post(b"[1, 2]").status_code == 400
    big = server.post({"model": "tts-1", "input": "Hi.", "voice": "ava", "ref_text": "x" * (3 << 20)})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit is counted as the body arrives
        yield b'{"model": "tts-1", "input": "'
        for _ in range(3 * 64):
            yield b"y" * (16 << 10)
        yield b'"}'

    assert server.post(chunked()).status_code == 413  # type: ignore[arg-type]
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"  # health needs no key
    assert server.client().audio.speech.create(model="tts-1", voice="ava", input="Fine.", response_format="pcm").content


def test_a_full_queue_answers_429_with_retry_after_and_a_gone_client_frees_its_place(one_place):
    options = ServeOptions(engine="piper", timeout=60, no_cache=True)
    long_text = "\n\n".join(f"Paragraph {n} keeps the only place busy." for n in range(100))  # far more than a socket buffers
    with Server(options, one_place) as s:
        body = {"model": "tts-1", "voice": "joe", "input": long_text, "stream_format": "audio", "response_format": "pcm"}
        with httpx.stream("POST", f"{s.url}/v1/audio/speech", json=body, timeout=120) as r:
            assert r.status_code == 200
            blocks = r.iter_raw()  # kept: a dropped iterator would close the connection
            next(blocks)  # the first chunk is out; the request holds the only place
            busy = s.post({"model": "tts-1", "voice": "joe", "input": "Me too."}, key=None)
            assert busy.status_code == 429 and int(busy.headers["Retry-After"]) >= 1
            assert busy.json()["error"]["code"] == "rate_limit_exceeded"
        # the client hung up mid-stream: its place is free again, long before 100 paragraphs could have rendered
        deadline = time.monotonic() + 20
        while httpx.get(f"{s.url}/health").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(f"{s.url}/health").json()["running"] == 0
        assert s.post({"model": "tts-1", "voice": "joe", "input": "My turn now.", "response_format": "pcm"}, key=None).status_code == 200
        log = s.log.lines()
        assert {"ts", "client", "method", "path", "status", "bytes", "ms"} <= set(log[-1])
        assert any(e["status"] == 429 for e in log)


def test_public_host_without_a_key_is_refused(tmp_path):
    from typer.testing import CliRunner

    from higgs_cli.cli import app

    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--engine", "piper"], env={"HIGGS_API_KEY": ""})
    assert result.exit_code == 2 and "without an API key" in result.output


def test_per_request_timeout_gives_504_and_the_server_goes_on(pool):
    options = ServeOptions(engine="piper", timeout=1.0, no_cache=True)
    long_text = "\n\n".join(f"Paragraph {n} makes this request take longer than a second." for n in range(12))
    with Server(options, pool) as s:
        r = s.post({"model": "tts-1", "voice": "joe", "input": long_text}, key=None)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert httpx.get(f"{s.url}/health").json() == {"status": "ok", "engine": "piper", "qa": "off", "running": 0, "waiting": 0}


def test_a_cloning_request_plans_every_speaker_in_the_uploaded_clip(tmp_path):
    """What a higgs server makes of ref_audio (no model needed to plan): the clip, checked like `voices add`."""
    from higgs_cli.options import BUNDLED_VOICES_DIR
    from higgs_cli.server_requests import BadRequest, build_plan, parse

    clip = (BUNDLED_VOICES_DIR / "nell.wav").read_bytes()
    options = ServeOptions(engine="higgs")
    body = {"model": "higgs", "input": "[A] One.\n[B] Two.", "ref_audio": base64.b64encode(clip).decode(), "ref_text": "Words."}
    plan, _ = build_plan(parse(body), options, tmp_path)
    assert {v.source for v in plan.cast.values()} == {"request"} and set(plan.cast) == {"A", "B"}
    voice = plan.cast["A"]
    assert voice.clip == tmp_path / "ref_audio" and voice.clip.read_bytes() == clip and voice.transcript == "Words."
    short = io.BytesIO()
    sf.write(short, np.zeros(12000, np.float32), 24000, format="WAV")
    for ref, text, message in ((base64.b64encode(short.getvalue()).decode(), "x", "3-30 s"), ("%%%", "x", "not valid base64"),
                               (body["ref_audio"], None, "needs ref_text")):
        with pytest.raises(BadRequest, match=message):
            build_plan(parse({**body, "ref_audio": ref, "ref_text": text}), options, tmp_path)


def test_espeak_workers_share_its_one_synthesiser(tmp_path):
    """eSpeak NG is one synthesiser per process: two workers must not each install a callback (one would get
    the other's samples, or none)."""
    from higgs_cli.serving import scheduler

    texts = [f"Request {n} asks the formant voice for this sentence." for n in range(4)]
    sched = scheduler("espeak", None, workers=2, max_running=4, max_waiting=0)
    sched.start()
    try:
        with Server(ServeOptions(engine="espeak", no_cache=True), sched) as s:
            with ThreadPoolExecutor(4) as pool:
                replies = list(pool.map(lambda t: s.post({"model": "espeak", "voice": "joe", "input": t, "response_format": "wav"},
                                                         key=None), texts))
            solo = s.post({"model": "espeak", "voice": "joe", "input": texts[0], "response_format": "wav"}, key=None)
    finally:
        sched.close()
    assert all(r.status_code == 200 for r in replies + [solo])
    seconds = [len(_wav(r.content)[0]) / 24000 for r in replies]
    assert all(s > 1.5 for s in seconds)
    assert abs(seconds[0] - len(_wav(solo.content)[0]) / 24000) < 0.1  # its own sentence, not another's
