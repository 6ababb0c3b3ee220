"""The static-cache generation loop on the tiny random checkpoint: equal to transformers' generate, batch-invariant.

Frames are compared exactly: the fast loop runs the same float32 CPU arithmetic as generate() (to ~1e-7 in the
logits) and draws from per-sequence generators in generate()'s order, so any difference is a logic error.
"""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from higgs_cli import compat, fastgen  # noqa: E402
from higgs_cli.engines.higgs import sampling_config, validate_settings, with_stream_markers  # noqa: E402
from higgs_cli.errors import UsageError  # noqa: E402
from higgs_cli.options import HiggsSettings  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
TURN = "<|start_header_id|>{}<|end_header_id|>\n\n"
GREEDY = HiggsSettings(temperature=0.0, ras_window=0)
SAMPLED = HiggsSettings(temperature=1.0, top_k=50, top_p=0.95)  # RAS on (window 7, 2 repeats)
COLD = HiggsSettings(temperature=0.7, top_k=20, top_p=0.8)


@pytest.fixture(scope="module")
def tiny():
    from .higgs_tiny import build_models

    tokenizer, lm, _ = build_models()
    return tokenizer, lm


def make_request(tiny, text: str, context_frames: int, seed: int, max_new: int, codes=None) -> fastgen.Request:
    """A prompt like the engine's: user turn, optionally a generated turn (random codes, or `codes`), then the next user turn."""
    tokenizer, lm = tiny
    cfg, k = lm.config, lm.config.num_codebooks
    prompt = "<|begin_of_text|>" + TURN.format("user") + text + "<|eot_id|>" + TURN.format("assistant")
    audio = None
    if context_frames and codes is None:
        codes = torch.randint(0, 64, (k, context_frames), generator=torch.Generator().manual_seed(context_frames))
    if codes is not None and codes.shape[1]:
        audio = with_stream_markers(codes, cfg.audio_stream_bos_id, cfg.audio_stream_eos_id)
        prompt += ("<|AUDIO_OUT|>" * (audio.shape[0] - k + 1) + "<|reserved_special_token_6|>" * (k - 1) + "<|eot_id|>"
                   + TURN.format("user") + "And more." + "<|eot_id|>" + TURN.format("assistant"))
    ids = tokenizer(prompt + "<|audio_out_bos|>", add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    return fastgen.Request(ids, audio, seed, max_new)


def requests(tiny, seeds=(3, 5, 9)) -> list[fastgen.Request]:
    texts = [("Hello there, how are you?", 0, 60), ("It was the night.", 12, 40), ("Hooray!", 30, 80)]
    return [make_request(tiny, t, n, s, m) for (t, n, m), s in zip(texts, seeds)]


def plain(tiny, request: fastgen.Request, settings: HiggsSettings):
    """What the engine's plain path gets: generate() under torch.manual_seed(seed), minus the prompt's frames."""
    lm = tiny[1]
    ids = request.input_ids[None]
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if request.audio_ids is not None:
        kwargs["audio_input_ids"] = request.audio_ids[None]
        kwargs["audio_input_ids_mask"] = torch.ones(1, request.audio_ids.shape[0], dtype=torch.bool)
    gc = sampling_config(lm.generation_config, settings, request.max_new)
    with torch.random.fork_rng(), torch.inference_mode():
        torch.manual_seed(request.seed)
        out = lm.generate(**kwargs, generation_config=gc)
    return out[0, 0 if request.audio_ids is None else request.audio_ids.shape[0]:]


def fast(tiny, reqs, settings: HiggsSettings, **kwargs):
    lm = tiny[1]
    sampling = fastgen.Sampling.from_config(sampling_config(lm.generation_config, settings, 1))
    return fastgen.generate(lm, reqs, sampling, **kwargs)


def assert_same(a, b) -> None:
    assert [x.shape for x in a] == [y.shape for y in b]
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


# --- equal to transformers' generate --------------------------------------------------------------------
@pytest.mark.parametrize("settings", [GREEDY, SAMPLED, COLD], ids=["greedy", "sampled-ras", "cold-topk-topp"])
def test_fast_path_equals_plain_generate(tiny, settings):
    reqs = requests(tiny)
    ours = [fast(tiny, [r], settings)[0] for r in reqs]
    assert_same(ours, [plain(tiny, r, settings) for r in reqs])
    assert all(len(x) > 0 for x in ours)


def test_grouped_query_attention_equals_plain_generate(tiny):
    """The real model has 24 query heads over 8 key/value heads; the tiny one gets 4 over 2."""
    from transformers import HiggsAudioV2ForConditionalGeneration

    from .higgs_tiny import lm_config

    torch.manual_seed(1)
    config = lm_config(tiny[0])
    config.num_attention_heads, config.num_key_value_heads, config.head_dim = 4, 2, 8
    gqa = (tiny[0], HiggsAudioV2ForConditionalGeneration(config).eval())
    reqs = requests(gqa)
    assert_same([fast(gqa, [r], SAMPLED)[0] for r in reqs], [plain(gqa, r, SAMPLED) for r in reqs])


def test_stops_like_generate_on_the_all_eos_row_or_the_budget(tiny):
    eos = tiny[1].config.audio_stream_eos_id
    frames = fast(tiny, requests(tiny), SAMPLED)
    for f, r in zip(frames, requests(tiny), strict=True):
        assert len(f) == r.max_new or (f[-1] == eos).all()
    assert len({len(f) for f in frames}) > 1  # the sequences really stop at different steps


def test_ras_off_really_turns_it_off_in_plain_generate(tiny):
    """sampling_config must not let generate() fall back to the checkpoint's RAS (it would resample at random)."""
    request = requests(tiny)[2]
    outs = [plain(tiny, dataclasses.replace(request, seed=s), GREEDY) for s in (1, 2)]
    assert torch.equal(outs[0], outs[1])


# --- batched chains ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("exact", [True, False])
def test_batch_equals_each_sequence_alone(tiny, exact):
    reqs = requests(tiny)
    solo = [fast(tiny, [r], SAMPLED, exact=exact)[0] for r in reqs]
    assert_same(fast(tiny, reqs, SAMPLED, exact=exact, sync_every=4), solo)
    assert_same(fast(tiny, reqs[::-1], SAMPLED, exact=exact), solo[::-1])  # order follows the requests


def test_batch_greedy_equals_solo_and_seeds_are_per_sequence(tiny):
    reqs = requests(tiny)
    assert_same(fast(tiny, reqs, GREEDY), [fast(tiny, [r], GREEDY)[0] for r in reqs])
    same_prompt = [dataclasses.replace(reqs[1], seed=s, max_new=60) for s in (1, 1, 2)]
    a, b, c = fast(tiny, same_prompt, COLD)
    assert torch.equal(a, b) and not torch.equal(a, c)


CHAIN_TEXTS = [["Hello there.", "How are you?", "It was the night."], ["Hooray!"], ["The sun rises.", "And sets in the west."],
               ["Today.", "Birthday!"]]


def chain_feed(tiny, produced: dict[int, list]):
    """Requests whose context is the chain's own previous output: chunk j of chain c can only be built after j - 1."""
    from higgs_cli.engines.higgs import extract_codes

    cfg = tiny[1].config

    def feed(chain: int) -> fastgen.Request | None:
        done = produced.setdefault(chain, [])
        if len(done) == len(CHAIN_TEXTS[chain]):
            return None
        previous = extract_codes(done[-1], cfg.audio_stream_bos_id, cfg.audio_stream_eos_id) if done else None
        return make_request(tiny, CHAIN_TEXTS[chain][len(done)], 0, 100 * chain + len(done), 30 + 7 * chain, codes=previous)

    return feed


def run_chains(tiny, width: int, settings: HiggsSettings, **kwargs) -> dict[int, list]:
    lm = tiny[1]
    sampling = fastgen.Sampling.from_config(sampling_config(lm.generation_config, settings, 1))
    produced: dict[int, list] = {}
    order = []
    for chain, frames in fastgen.stream(lm, len(CHAIN_TEXTS), chain_feed(tiny, produced), sampling, width=width, **kwargs):
        produced[chain].append(frames)
        order.append(chain)
    assert sorted(order) == sorted(c for c, texts in enumerate(CHAIN_TEXTS) for _ in texts)
    return produced


@pytest.mark.parametrize("exact", [True, False])
def test_chains_batched_equal_chains_run_one_by_one(tiny, exact):
    """Continuous batching: rows refill with a chain's next chunk (built from its own output) or the next chain."""
    one = run_chains(tiny, 1, SAMPLED, exact=exact)
    for width in (2, 4):
        wide = run_chains(tiny, width, SAMPLED, exact=exact, sync_every=3)
        for chain in range(len(CHAIN_TEXTS)):
            assert_same(wide[chain], one[chain])
    assert all(len(f) > 0 for frames in one.values() for f in frames)


def test_a_chain_equals_its_requests_generated_one_at_a_time(tiny):
    produced = run_chains(tiny, 3, SAMPLED)
    feed_again: dict[int, list] = {}
    feed = chain_feed(tiny, feed_again)
    for chain in range(len(CHAIN_TEXTS)):
        for frames in produced[chain]:
            request = feed(chain)
            assert torch.equal(fast(tiny, [request], SAMPLED)[0], frames)
            assert torch.equal(plain(tiny, request, SAMPLED), frames)  # and what transformers' generate samples
            feed_again[chain].append(frames)


def test_the_cache_grows_when_a_later_request_needs_more_room(tiny):
    lm = tiny[1]
    decoder = fastgen.StaticDecoder(lm, 2, fastgen.LENGTH_QUANTUM)
    produced: dict[int, list] = {}
    sampling = fastgen.Sampling.from_config(sampling_config(lm.generation_config, SAMPLED, 1))
    feed = chain_feed(tiny, produced)

    def long_feed(chain: int):
        request = feed(chain)
        return None if request is None else dataclasses.replace(request, max_new=fastgen.LENGTH_QUANTUM)

    for chain, frames in fastgen.stream(lm, 2, long_feed, sampling, width=2, decoder=decoder):
        produced[chain].append(frames)
    assert sum(len(f) for f in produced[0] + produced[1]) > 0
    assert len(produced[0]) == 3 and len(produced[1]) == 1


def test_sync_free_ras_is_deterministic(tiny):
    reqs = requests(tiny)
    assert_same(fast(tiny, reqs, SAMPLED, exact=False), fast(tiny, reqs, SAMPLED, exact=False))


def test_a_decoder_is_reused_across_calls(tiny):
    reqs = requests(tiny)
    decoder = fastgen.StaticDecoder(tiny[1], 1, fastgen.cache_length(reqs))
    reused = [fast(tiny, [r], SAMPLED, decoder=decoder)[0] for r in reqs]
    assert_same(reused, [fast(tiny, [r], SAMPLED)[0] for r in reqs])


# --- the engine switch ------------------------------------------------------------------------------------
def test_unknown_decoder_is_named():
    with pytest.raises(UsageError, match="decoder 'turbo' is unknown"):
        validate_settings(HiggsSettings(decoder="turbo"))


def test_engine_fast_decoder_renders_what_the_plain_one_does():
    from higgs_cli.engines import ChunkRequest
    from higgs_cli.engines.higgs import HiggsEngine
    from higgs_cli.voices import Voice

    from .higgs_tiny import hub_dirs

    model_dir, codec_dir = hub_dirs()
    voice = Voice(name="auto-1", source="auto")
    audio = {}
    for decoder in ("plain", "fast"):
        engine = HiggsEngine(HiggsSettings(model=str(model_dir), codec=str(codec_dir), device="cpu", decoder=decoder,
                                           max_new_tokens=30, temperature=0.7))
        chunks = [engine.synthesize(ChunkRequest(i, "A", text, voice, 4)) for i, text in enumerate(["Hello there.", "How are you?"])]
        audio[decoder] = [c.audio for c in chunks]
        assert [c.info["frames"] for c in chunks] and all(c.info["frames"] > 0 for c in chunks)
    assert all((a == b).all() for a, b in zip(audio["plain"], audio["fast"], strict=True))


# --- CUDA graphs (a GPU only) -------------------------------------------------------------------------
@pytest.mark.gpu
def test_cuda_graph_step_equals_the_eager_step(tiny):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from .higgs_tiny import build_models

    lm = build_models()[1].to("cuda")
    reqs = requests(tiny)
    sampling = fastgen.Sampling.from_config(sampling_config(lm.generation_config, SAMPLED, 1))
    eager = fastgen.generate(lm, reqs, sampling, graphs=False)
    graphed = fastgen.generate(lm, reqs, sampling, graphs=True)
    assert_same(graphed, eager)
    assert_same(graphed, [fastgen.generate(lm, [r], sampling, graphs=True)[0] for r in reqs])


# --- the GPU benchmark script ---------------------------------------------------------------------------
def test_gpu_benchmark_runs_its_tiny_smoke_mode_on_the_cpu():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / "gpu_rtf.py"
    run = subprocess.run([sys.executable, str(script), "--tiny"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith(("| plain", "| fast", "| codec"))]
    assert [r.split("|")[1:3] for r in rows] == [[" plain generate ", " 1 "], [" fast ", " 1 "], [" fast ", " 2 "],
                                                 [" fast chains ", " 2 "], [" codec decode ", " 1 "]]
    chains = rows[3].split("|")[2:9]  # chains, batch, chunks x frames, wall s, prefill s, steps/s, total frames
    assert [c.strip() for c in chains[:3]] == ["2", "2", "2 x 20"] and chains[6].strip() == "80"  # 2 chains x 2 chunks x 20
    assert rows[4].split("|")[3:5] == [" 50 ", " 2.0 "]  # codec: 50 frames = 2 s of audio


def test_gumbel_max_draws_from_the_softmax():
    """The GPU sampler's primitive: frequencies of argmax(log p + Gumbel) match p (and -inf codes never come)."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.tensor([2.0, 1.0, 0.0, -1.0, -float("inf")])
    probs = scores.softmax(-1)
    n = 20_000
    noise = fastgen.gumbel_(torch.empty(n, 5), gen)
    draws = fastgen.gumbel_max(scores.expand(n, 5), noise)
    freq = torch.bincount(draws, minlength=5).float() / n
    assert freq[4] == 0
    assert torch.all((freq - probs).abs() <= 4 * (probs * (1 - probs) / n).sqrt() + 1e-9)


def test_the_gpu_sampler_draws_what_multinomial_draws_where_ras_stays_quiet(tiny):
    """exact=False (the CUDA default) takes each row's noise in blocks; torch.multinomial draws one sample by the
    same exponential trick from the same generator, so on the CPU the frames are equal with RAS off."""
    reqs = [dataclasses.replace(r, max_new=60) for r in requests(tiny)]
    no_ras = HiggsSettings(temperature=0.9, top_k=40, top_p=0.9, ras_window=0)
    gumbel = fast(tiny, reqs, no_ras, exact=False)
    assert_same(gumbel, fast(tiny, reqs, no_ras, exact=True))
    assert_same(gumbel, [plain(tiny, r, no_ras) for r in reqs])
    assert max(len(g) for g in gumbel) > fastgen.NOISE_BLOCK  # the noise blocks really roll over
    assert_same(fast(tiny, reqs, GREEDY, exact=False), fast(tiny, reqs, GREEDY, exact=True))


def test_attention_reads_only_up_to_the_longest_live_sequence(tiny):
    """In a cache much longer than the prompts a step attends over one ATTENTION_BUCKET, with the same frames."""
    lm = tiny[1]
    reqs = requests(tiny)
    long = fastgen.StaticDecoder(lm, len(reqs), 4 * fastgen.ATTENTION_BUCKET)
    spans = []
    original = long._forward

    def spy(frames, positions, span):
        spans.append(span)
        return original(frames, positions, span)

    long._forward = spy
    out = fast(tiny, reqs, SAMPLED, decoder=long)
    assert set(spans) == {fastgen.ATTENTION_BUCKET}
    assert_same(out, [plain(tiny, r, SAMPLED) for r in reqs])


# --- transformers' cache argument (renamed in 5.24: past_key_values -> cache) ------------------------------
def test_prefill_uses_the_cache_argument_this_transformers_names(tiny):
    import warnings

    request = requests(tiny)[1]
    decoder = fastgen.StaticDecoder(tiny[1], 1, fastgen.cache_length([request]))
    with warnings.catch_warnings(record=True) as caught, torch.inference_mode():
        warnings.simplefilter("always")
        decoder.prefill(0, request)
        decoder.prefill(0, dataclasses.replace(request, prefix=8))  # the shared-prefix path builds a cache too
    assert not [w for w in caught if "past_key_values" in str(w.message)]
    assert compat.cache_kwarg(tiny[1].model) == "cache"


def test_the_old_cache_argument_name_still_works():
    class Older(torch.nn.Module):  # transformers before 5.24: forward(..., past_key_values=None) returning .past_key_values
        def forward(self, input_ids=None, past_key_values=None, use_cache=None):
            return {"past_key_values": past_key_values}

    assert compat.cache_kwarg(Older()) == "past_key_values"
    marker = object()

    class Output(dict):
        past_key_values = marker

    assert compat.returned_cache(Output()) is marker


@pytest.mark.gpu
def test_cuda_graphs_on_a_second_gpu_while_the_first_is_current(tiny):
    """--device cuda:1: capture and replay run under cuda:1's context although cuda:0 stays the current device."""
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    from .higgs_tiny import build_models

    lm = build_models()[1].to("cuda:1")
    reqs = requests(tiny)
    sampling = fastgen.Sampling.from_config(sampling_config(lm.generation_config, SAMPLED, 1))
    torch.cuda.set_device(0)
    eager = fastgen.generate(lm, reqs, sampling, graphs=False)
    graphed = fastgen.generate(lm, reqs, sampling, graphs=True)
    assert torch.cuda.current_device() == 0
    assert_same(graphed, eager)
