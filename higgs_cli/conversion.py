"""Converting Boson's original Higgs Audio v2 layout to the transformers one: the LM (dual-FFN adapter, whole or
partially frozen embeddings, llama3 rope) and the codec (weight-norm folded, quantizers counted from model.pth)."""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .errors import UsageError
from .model import AUDIO_DELAY_TOKEN, _read_config, layout


def convert(src: Path, dst: Path) -> str:
    """Convert an original-layout LM or codec directory to the transformers layout; returns the kind."""
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.is_dir():
        raise UsageError(f"{src} is not a directory; give the original checkpoint directory")
    kind = layout(src)
    if not kind.startswith("original-"):
        raise UsageError(f"{src} is already in the transformers layout; load it directly with --model/--codec")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UsageError(f"{dst} already exists and is not empty; give a new directory (nothing there is overwritten)")
    from .interrupts import heavy_import

    for name in ("torch", "safetensors.torch", "transformers"):  # native code: Ctrl-C during its import would abort
        heavy_import(name)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    try:
        tmp.mkdir(parents=True)
    except OSError as e:
        raise UsageError(f"{dst}: cannot create it ({e.strerror}); give a folder in a writable place") from e
    try:
        if kind == "original-lm":
            _convert_lm(src, tmp)
        else:
            _convert_codec(src, tmp)
    except BaseException:  # Ctrl-C and SIGTERM too: a half-written copy is gigabytes
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dst.is_dir():  # empty, checked above
        dst.rmdir()
    os.replace(tmp, dst)
    return kind.removeprefix("original-")


def _lm_config(original: dict[str, Any], tokenizer: Any) -> Any:
    from transformers import HiggsAudioV2Config

    text = dict(original.get("text_config") or {})
    rope = text.get("rope_scaling") or text.get("rope_parameters")
    rope = dict(rope, rope_theta=text.get("rope_theta", 500000.0)) if rope else None
    if rope and "type" in rope and "rope_type" not in rope:
        rope["rope_type"] = rope.pop("type")
    keep = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "attention_bias",
            "mlp_bias", "head_dim")  # not tie_word_embeddings: Llama's says true, but the port has no tied text head
    kwargs = {k: text[k] for k in keep if text.get(k) is not None}
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    return HiggsAudioV2Config(
        **kwargs,
        rope_parameters=rope,
        num_codebooks=original.get("audio_num_codebooks", 8),
        codebook_size=original.get("audio_codebook_size", 1024) + 2,  # + stream BOS/EOS
        audio_stream_bos_id=original.get("audio_stream_bos_id", 1024),
        audio_stream_eos_id=original.get("audio_stream_eos_id", 1025),
        audio_token_id=original.get("audio_out_token_idx", 128016),
        audio_bos_token_id=original.get("audio_out_bos_token_id", 128013),
        audio_delay_token_id=tokenizer.convert_tokens_to_ids(AUDIO_DELAY_TOKEN),
        pad_token_id=original.get("pad_token_id", 128001),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eot,
    )


def _check_adapter(src: Path, original: dict[str, Any]) -> None:
    """transformers' port has the audio FFN in every layer. Boson's release says "dual_ffn_fast_forward" (layers
    without the audio FFN would pass audio straight through) with every layer listed, which is the same model."""
    adapter = original.get("audio_adapter_type")
    n_layers = (original.get("text_config") or {}).get("num_hidden_layers")
    layers = original.get("audio_dual_ffn_layers")
    if adapter not in ("dual_ffn", "dual_ffn_fast_forward"):
        raise UsageError(f"{src}: audio_adapter_type {adapter!r} cannot be converted; only Higgs Audio v2's dual FFN "
                         f"(dual_ffn or dual_ffn_fast_forward) is supported")
    if layers is not None and sorted(set(layers)) != list(range(n_layers or 0)):
        raise UsageError(f"{src}: audio_dual_ffn_layers lists {len(set(layers))} of {n_layers} layers; only checkpoints with "
                         f"the audio FFN in every layer (the Higgs Audio v2 3B base) can be converted")


def _lm_state_dict(src: Path) -> dict[str, Any]:
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    raw: dict[str, Any] = {}
    for path in sorted(src.glob("*.safetensors")):
        try:
            raw.update(load_file(path))
        except (SafetensorError, OSError) as e:
            raise UsageError(f"{path}: damaged or incomplete weights file ({str(e).splitlines()[0][:120]}); download it again") from e
    # Boson trains with partially frozen embeddings/heads: the two halves are concatenated back.
    for whole, (a, b) in {
        "embed_tokens.weight": ("embed_tokens.embedding_frozen.weight", "embed_tokens.embedding_trainable.weight"),
        "audio_decoder_proj.audio_lm_head.weight": ("audio_decoder_proj.audio_lm_head.linear_frozen.weight",
                                                    "audio_decoder_proj.audio_lm_head.linear_trainable.weight"),
        "audio_decoder_proj.text_lm_head.weight": ("audio_decoder_proj.text_lm_head.linear_frozen.weight",
                                                   "audio_decoder_proj.text_lm_head.linear_trainable.weight"),
    }.items():
        if a in raw:
            raw[whole] = torch.cat([raw.pop(a), raw.pop(b)], dim=0)
    out = {}
    for key, tensor in raw.items():
        if key.endswith(("rotary_emb.inv_freq", "rotary_emb.original_inv_freq", "audio_codebook_weights")):
            continue
        key = re.sub(r"^audio_codebook_embeddings\.", "model.embed_audio_tokens.embed_audio_tokens.", key)
        key = re.sub(r"^(embed_tokens|layers|norm)\b", r"model.\1", key)
        out[re.sub(r"^audio_decoder_proj\.", "", key)] = tensor
    return out


def _convert_lm(src: Path, dst: Path) -> None:
    import torch
    from transformers import AutoTokenizer, HiggsAudioV2ForConditionalGeneration

    original = _read_config(src)
    _check_adapter(src, original)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError) as e:
        raise UsageError(f"{src}: no usable tokenizer (tokenizer.json and tokenizer_config.json); copy the checkpoint's "
                         "tokenizer files into it") from e
    config = _lm_config(original, tokenizer)
    state = _lm_state_dict(src)
    with torch.device("meta"):
        model = HiggsAudioV2ForConditionalGeneration(config, use_text_head="text_lm_head.weight" in state)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("audio_tokens_offsets")]
    if missing or unexpected:
        raise UsageError(f"{src}: weights do not match the Higgs Audio v2 architecture "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}); is this the 3B base checkpoint?")
    model.model.embed_audio_tokens.audio_tokens_offsets = torch.arange(config.num_codebooks) * config.codebook_size
    model.generation_config.ras_win_len = 7
    model.generation_config.ras_win_max_num_repeat = 2
    model.save_pretrained(dst)
    tokenizer.save_pretrained(dst)


def _merge_weight_norm(state: dict[str, Any]) -> dict[str, Any]:
    """Fold the acoustic convs' weight norm into plain weights; HuBERT keeps its own (as parametrizations)."""
    out = {}
    for key, value in state.items():
        if key.startswith("semantic_model.") and key.endswith((".weight_g", ".weight_v")):
            part = "original0" if key.endswith("_g") else "original1"
            out[key[: -len(".weight_g")] + f".parametrizations.weight.{part}"] = value
        elif key.endswith(".weight_g"):
            base = key.removesuffix(".weight_g")
            v = state[base + ".weight_v"]
            out[base + ".weight"] = value * v / v.norm(dim=list(range(1, v.dim())), keepdim=True)
        elif not key.endswith(".weight_v"):
            out[key] = value
    return out


_STAGE = ("snake1", "conv1", "snake2", "conv2")


def codec_key(key: str, n_blocks: int) -> str | None:
    """Boson codec parameter name -> transformers name (None for parameters the port drops)."""
    if key.startswith("fc1."):
        return None  # unused in the forward pass
    rules: list[tuple[str, Any]] = [
        (r"^encoder\.block\.0\.", "acoustic_encoder.conv1."),
        (rf"^encoder\.block\.{n_blocks + 1}\.", "acoustic_encoder.snake1."),
        (rf"^encoder\.block\.{n_blocks + 2}\.", "acoustic_encoder.conv2."),
        (r"^encoder\.block\.(\d+)\.block\.([012])\.block\.([0123])\.",
         lambda m: f"acoustic_encoder.block.{int(m[1]) - 1}.res_unit{int(m[2]) + 1}.{_STAGE[int(m[3])]}."),
        (r"^encoder\.block\.(\d+)\.block\.3\.", lambda m: f"acoustic_encoder.block.{int(m[1]) - 1}.snake1."),
        (r"^encoder\.block\.(\d+)\.block\.4\.", lambda m: f"acoustic_encoder.block.{int(m[1]) - 1}.conv1."),
        (r"^decoder_2\.model\.0\.", "acoustic_decoder.conv1."),
        (rf"^decoder_2\.model\.{n_blocks + 1}\.", "acoustic_decoder.snake1."),
        (rf"^decoder_2\.model\.{n_blocks + 2}\.", "acoustic_decoder.conv2."),
        (r"^decoder_2\.model\.(\d+)\.block\.0\.", lambda m: f"acoustic_decoder.block.{int(m[1]) - 1}.snake1."),
        (r"^decoder_2\.model\.(\d+)\.block\.1\.", lambda m: f"acoustic_decoder.block.{int(m[1]) - 1}.conv_t1."),
        (r"^decoder_2\.model\.(\d+)\.block\.([234])\.block\.([0123])\.",
         lambda m: f"acoustic_decoder.block.{int(m[1]) - 1}.res_unit{int(m[2]) - 1}.{_STAGE[int(m[3])]}."),
        (r"^quantizer\.vq\.layers\.", "quantizer.quantizers."),
        (r"\._codebook\.", ".codebook."),
        (r"^fc_prior\.", "fc."),
        (r"^fc_post1\.", "fc1."),
        (r"^fc_post2\.", "fc2."),
        (r"\.(conv|conv1|conv2)\.conv\.", r".\1."),
    ]
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def _hubert_config(state: dict[str, Any]) -> dict[str, Any]:
    """HuBERT's shape read off its weights (the original config only names a hub model)."""
    p = "semantic_model."
    hidden = state[p + "feature_projection.projection.weight"].shape[0]
    layers = {int(m[1]) for k in state if (m := re.match(rf"{re.escape(p)}encoder\.layers\.(\d+)\.", k))}
    convs = sorted(int(m[1]) for k in state if (m := re.match(rf"{re.escape(p)}feature_extractor\.conv_layers\.(\d+)\.conv\.weight$", k)))
    conv_w = [state[f"{p}feature_extractor.conv_layers.{i}.conv.weight"] for i in convs]
    pos = max((v for k, v in state.items() if k.startswith(p + "encoder.pos_conv_embed.conv.") and v.dim() == 3),
              key=lambda v: v.numel())  # the direction tensor (hidden, hidden / groups, kernel)
    groups = hidden // pos.shape[1]
    return {
        "hidden_size": hidden, "num_hidden_layers": len(layers),
        "num_attention_heads": max(1, hidden // 64),
        "intermediate_size": state[p + "encoder.layers.0.feed_forward.intermediate_dense.weight"].shape[0],
        "conv_dim": [w.shape[0] for w in conv_w], "conv_kernel": [w.shape[-1] for w in conv_w],
        "num_conv_pos_embeddings": pos.shape[-1], "num_conv_pos_embedding_groups": groups,
        "mask_time_prob": 0.0,
    }


_QUANTIZER = re.compile(r"^quantizer\.vq\.layers\.(\d+)\.")


def _quantizers(src: Path, original: dict[str, Any], raw: dict[str, Any]) -> tuple[int, list[float]]:
    """(quantizers, target bandwidths) the converted codec must say. transformers derives its quantizer count from
    the last bandwidth, but Boson's config lists bandwidths up to 4 kbps next to n_q 8 (16 quantizers' worth): the
    count comes from n_q and the layers in model.pth, and only the bandwidths those quantizers serve are kept."""
    present = {int(m[1]) for k in raw if (m := _QUANTIZER.match(k))}
    layers = max(present) + 1 if present else 0
    if present != set(range(layers)) or not layers:
        raise UsageError(f"{src}/model.pth has no complete set of quantizer layers (found {sorted(present)[:8]}); re-download the codec")
    n_q = int(original.get("n_q") or layers)
    if n_q > layers:
        raise UsageError(f"{src}: config.json says n_q {n_q} but model.pth holds {layers} quantizers; re-download the codec")
    rate = math.ceil(original.get("sample_rate", 24000) / math.prod(original["ratios"]))
    bits = math.ceil(math.log2(original.get("bins", 1024)))

    def served(bandwidth: float) -> int:  # as transformers' HiggsAudioV2TokenizerConfig.num_quantizers counts them
        return int(1000 * bandwidth // (rate * bits))

    bandwidths = [float(b) for b in original.get("target_bandwidths", []) if 0 < served(b) <= n_q]
    if not bandwidths or served(bandwidths[-1]) != n_q:
        bandwidths.append(n_q * rate * bits / 1000)
    if served(bandwidths[-1]) != n_q:
        raise UsageError(f"{src}: no bandwidth gives exactly {n_q} quantizers at {rate} frames/s and {bits} bits; check config.json")
    return n_q, bandwidths


def _convert_codec(src: Path, dst: Path) -> None:
    import torch
    from transformers import DacFeatureExtractor, HiggsAudioV2TokenizerConfig, HiggsAudioV2TokenizerModel

    original = _read_config(src)
    try:
        raw = torch.load(src / "model.pth", map_location="cpu", weights_only=True)
    except Exception as e:
        raise UsageError(f"{src}/model.pth is not a plain weights file ({e.__class__.__name__}); re-download the codec") from e
    raw = _merge_weight_norm(raw)
    ratios = list(original["ratios"])
    n_q, bandwidths = _quantizers(src, original, raw)
    raw = {k: v for k, v in raw.items() if not ((m := _QUANTIZER.match(k)) and int(m[1]) >= n_q)}
    state = {new: v for k, v in raw.items() if (new := codec_key(k, len(ratios))) is not None}
    config = HiggsAudioV2TokenizerConfig(
        acoustic_model_config={
            "encoder_hidden_size": state["acoustic_encoder.conv1.weight"].shape[0],
            "downsampling_ratios": ratios, "upsampling_ratios": ratios,
            "decoder_hidden_size": state["acoustic_decoder.conv1.weight"].shape[0],
            "hidden_size": original.get("D", state["acoustic_encoder.conv2.weight"].shape[0]),
        },
        semantic_model_config=_hubert_config(state),
        codebook_size=original.get("bins", 1024),
        codebook_dim=state["quantizer.quantizers.0.codebook.embed"].shape[1],
        target_bandwidths=bandwidths,
        sample_rate=original.get("sample_rate", 24000),
        semantic_sample_rate=original.get("semantic_sample_rate") or 16000,
    )
    with torch.device("meta"):
        model = HiggsAudioV2TokenizerModel(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or [k for k in unexpected if not k.endswith("masked_spec_embed")]:
        raise UsageError(f"{src}: codec weights do not match the Higgs Audio v2 tokenizer "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.save_pretrained(dst)
    DacFeatureExtractor(feature_size=1, hop_length=config.hop_length, padding_side="right", padding_value=0.0,
                        return_attention_mask=True, sampling_rate=config.sample_rate).save_pretrained(dst)


