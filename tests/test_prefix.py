"""Shared prompt prefixes (system prompt + reference clips) prefilled once per decoder and copied into each row."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from higgs_cli import fastgen  # noqa: E402
from higgs_cli.engines.higgs import sampling_config, with_stream_markers  # noqa: E402
from higgs_cli.options import HiggsSettings  # noqa: E402

TURN = "<|start_header_id|>{}<|end_header_id|>\n\n"
SAMPLED = HiggsSettings(temperature=1.0, top_k=50, top_p=0.95)


@pytest.fixture(scope="module")
def tiny():
    from .higgs_tiny import build_models

    tokenizer, lm, _ = build_models()
    return tokenizer, lm


def shared_prefix(tiny):
    """System turn and one reference pair (random codes), as the engine puts them before every chunk."""
    tokenizer, lm = tiny
    cfg, k = lm.config, lm.config.num_codebooks
    codes = torch.randint(0, 64, (k, 20), generator=torch.Generator().manual_seed(7))
    audio = with_stream_markers(codes, cfg.audio_stream_bos_id, cfg.audio_stream_eos_id)
    text = ("<|begin_of_text|>" + TURN.format("system") + "Generate audio following instruction.<|eot_id|>"
            + TURN.format("user") + "Hello there.<|eot_id|>" + TURN.format("assistant")
            + "<|AUDIO_OUT|>" * (audio.shape[0] - k + 1) + "<|reserved_special_token_6|>" * (k - 1) + "<|eot_id|>")
    return text, audio


def request(tiny, text: str, seed: int, share: bool = True) -> fastgen.Request:
    tokenizer = tiny[0]
    head, audio = shared_prefix(tiny)
    n = len(tokenizer(head, add_special_tokens=False)["input_ids"])
    ids = tokenizer(head + TURN.format("user") + text + "<|eot_id|>" + TURN.format("assistant") + "<|audio_out_bos|>",
                    add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    return fastgen.Request(ids, audio, seed, 40, prefix=n if share else 0)


def test_a_shared_prefix_prefill_matches_a_whole_prefill(tiny):
    lm = tiny[1]
    whole = request(tiny, "It was the night.", 1, share=False)
    split = dataclasses.replace(whole, prefix=request(tiny, "x", 1).prefix)
    assert 0 < split.prefix < len(split.input_ids)
    decoder = fastgen.StaticDecoder(lm, 2, fastgen.LENGTH_QUANTUM)
    with torch.inference_mode():
        reference = decoder.prefill(0, whole)
        first = decoder.prefill(1, split)  # computes and stores the prefix
        assert len(decoder._prefixes) == 1
        again = decoder.prefill(1, split)  # reuses it
        n = len(whole.input_ids)
        for k in decoder.keys:  # the rows' caches agree too, not only the logits
            torch.testing.assert_close(k[1, :, :n], k[0, :, :n], atol=1e-5, rtol=1e-4)
    assert torch.equal(first, again)
    torch.testing.assert_close(first, reference, atol=1e-4, rtol=1e-4)


def test_batched_requests_with_a_shared_prefix_equal_each_alone(tiny):
    lm = tiny[1]
    sampling = fastgen.Sampling.from_config(sampling_config(lm.generation_config, SAMPLED, 1))
    reqs = [request(tiny, t, s) for t, s in (("It was the night.", 1), ("Hooray!", 2), ("How are you?", 3))]
    solo = [fastgen.generate(lm, [r], sampling)[0] for r in reqs]
    together = fastgen.generate(lm, reqs, sampling)
    assert all(torch.equal(a, b) for a, b in zip(together, solo, strict=True))
    assert all(len(x) > 0 for x in solo)
