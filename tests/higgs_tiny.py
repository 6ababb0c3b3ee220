"""Tiny random Higgs Audio v2 checkpoints for tests: built from configs, saved like the hub ones, or in Boson's original layout.

Sizes are tiny: LM hidden 32, 2 layers, 2 codebooks; a DAC codec with a few channels and a one-layer HuBERT;
a byte-level BPE tokenizer trained here on a few sentences, with the model's special tokens. Every value that
is not a size is the published one, so the engine meets what the real checkpoints say. Where each comes from:

- LM, transformers layout (`bosonai/higgs-audio-v2-generation-3B-base` as republished): transformers'
  `convert_higgs_audio_v2_to_hf.py` builds it as `HiggsAudioV2Config(codebook_size=1026)`, so it carries the
  config class defaults: max_position_embeddings 2048 and rope {llama3, theta 500000, factor 32, low_freq_factor
  0.125, high_freq_factor 0.5, original_max_position_embeddings 1024} (configuration_higgs_audio_v2.py); stream
  BOS/EOS right after the codes (1024/1025 there), generation_config ras_win_len 7, ras_win_max_num_repeat 2.
- LM, original layout (Boson's first release; config copied in e.g. neiom-systems/higgs-audio models/model/
  config.json): model_type higgs_audio, audio_adapter_type "dual_ffn_fast_forward" with audio_dual_ffn_layers
  listing every layer, text_config of Llama-3.2-3B (max_position_embeddings 131072, rope_theta 500000,
  rope_scaling {llama3, factor 32, low 1, high 4, original 8192}, tie_word_embeddings true), use_delay_pattern,
  whole (not split) embed_tokens and audio heads, and a text_lm_head.
- Codec, original layout (`bosonai/higgs-audio-v2-tokenizer` before republishing; same copy, models/
  audio_tokenizer/config.json): target_bandwidths [0.5, 1, 1.5, 2, 4] next to n_q 8, i.e. bandwidths past what
  its quantizers give (4 kbps at 25 Hz x 10 bits would be 16 quantizers), no semantic_sample_rate key; model.pth
  with weight-norm on the acoustic convs (upstream higgs_audio_tokenizer.py).
- Codec, transformers layout: hop 960 at 24 kHz (25 frames/s), and bandwidths that give exactly its quantizers, as
  transformers' HiggsAudioV2TokenizerConfig derives num_quantizers from the last one (sizes: 2 codebooks of 64).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

CODEBOOKS = 2
CODES = 64  # a size: the published 1024 would make random models rarely stop (EOS is 1 of 1026), slowing every test
PUBLISHED_BANDWIDTHS = [0.5, 1, 1.5, 2, 4]  # the original codec config's target_bandwidths (kbps)
# transformers' converted LM config: the HiggsAudioV2Config defaults (configuration_higgs_audio_v2.py)
CONVERTED_POSITIONS = 2048
CONVERTED_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 0.125,
                  "high_freq_factor": 0.5, "original_max_position_embeddings": 1024}
# the original LM's text_config (Llama-3.2-3B): the same rotary frequencies, spelled for 131072 positions
ORIGINAL_POSITIONS = 131072
ORIGINAL_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "original_max_position_embeddings": 8192}
SPECIAL_TOKENS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<|eom_id|>", "<|scene_desc_start|>", "<|scene_desc_end|>", "<|audio_bos|>", "<|audio_eos|>",
    "<|audio_out_bos|>", "<|AUDIO|>", "<|AUDIO_OUT|>", "<|reserved_special_token_6|>",
]
CORPUS = [
    "Generate audio following instruction. The sun rises in the east and sets in the west.",
    "You are an AI assistant designed to convert text into speech. SPEAKER0: feminine SPEAKER1: masculine",
    "Hello there, how are you doing today? It was the night before my birthday. Hooray!",
    "Audio is recorded from a quiet room.",
]


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   pad_token="<|end_of_text|>")


def lm_config(tokenizer, max_positions: int = CONVERTED_POSITIONS):
    from transformers import HiggsAudioV2Config

    ids = tokenizer.convert_tokens_to_ids
    return HiggsAudioV2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=16, max_position_embeddings=max_positions,
        num_codebooks=CODEBOOKS, codebook_size=CODES + 2, audio_stream_bos_id=CODES, audio_stream_eos_id=CODES + 1,
        audio_token_id=ids("<|AUDIO_OUT|>"), audio_bos_token_id=ids("<|audio_out_bos|>"),
        audio_delay_token_id=ids("<|reserved_special_token_6|>"), pad_token_id=ids("<|end_of_text|>"),
        bos_token_id=ids("<|begin_of_text|>"), eos_token_id=ids("<|eot_id|>"), rope_parameters=dict(CONVERTED_ROPE),
    )


def codec_config(target_bandwidths: list[float] | None = None):
    from transformers import HiggsAudioV2TokenizerConfig

    return HiggsAudioV2TokenizerConfig(
        acoustic_model_config={"encoder_hidden_size": 4, "downsampling_ratios": [8, 5, 4, 2, 3],
                               "decoder_hidden_size": 32, "upsampling_ratios": [8, 5, 4, 2, 3], "hidden_size": 8},
        semantic_model_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1,
                               "intermediate_size": 32, "conv_dim": [8] * 7, "num_conv_pos_embeddings": 16,
                               "num_conv_pos_embedding_groups": 2},
        codebook_size=CODES, codebook_dim=8,
        target_bandwidths=target_bandwidths or [0.15, 0.3],  # 1 or 2 codebooks of 6 bits at 25 Hz
    )


def build_models(seed: int = 0):
    """(tokenizer, LM, codec) with random weights; codebooks get random vectors so codes vary, and the
    codec's last conv is scaled so its output is not trimmed away as silence by the pipeline."""
    from transformers import HiggsAudioV2ForConditionalGeneration, HiggsAudioV2TokenizerModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    lm = HiggsAudioV2ForConditionalGeneration(lm_config(tokenizer)).eval()
    codec = HiggsAudioV2TokenizerModel(codec_config()).eval()
    with torch.no_grad():
        for q in codec.quantizer.quantizers:
            q.codebook.embed.normal_()
        codec.acoustic_decoder.conv2.weight.mul_(100.0)  # random init is near-silent; make it speech-loud
    lm.generation_config.ras_win_len = 7
    lm.generation_config.ras_win_max_num_repeat = 2
    return tokenizer, lm, codec


def save_hub_layout(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the transformers layout the hub serves: (model dir, codec dir)."""
    from transformers import DacFeatureExtractor

    tokenizer, lm, codec = build_models(seed)
    model_dir, codec_dir = root / "model", root / "codec"
    lm.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    codec.save_pretrained(codec_dir)
    DacFeatureExtractor(feature_size=1, hop_length=960, sampling_rate=24000, padding_value=0.0,
                        return_attention_mask=True).save_pretrained(codec_dir)
    return model_dir, codec_dir


# --- Boson's original layout (the inverse of the conversion, written independently) ----------------
def save_original_lm(directory: Path, tokenizer, lm, *, split_embeddings: bool = False, adapter: str = "dual_ffn_fast_forward",
                     dual_ffn_layers: list[int] | None = None) -> None:
    """Boson's original layout as published: whole embeddings and heads, a text head, the published config keys.
    `split_embeddings` writes the partially frozen halves some training checkpoints carry instead."""
    from safetensors.torch import save_file

    state = {}
    for key, tensor in lm.state_dict().items():
        if key.endswith("audio_tokens_offsets"):
            continue
        key = key.replace("model.embed_audio_tokens.embed_audio_tokens.", "audio_codebook_embeddings.")
        key = re.sub(r"^model\.", "", key)
        key = re.sub(r"^audio_lm_head\.", "audio_decoder_proj.audio_lm_head.", key)
        state[key] = tensor.contiguous()
    c = lm.config
    state["audio_decoder_proj.text_lm_head.weight"] = torch.randn(c.vocab_size, c.hidden_size)  # unused by audio generation
    if split_embeddings:
        embed = state.pop("embed_tokens.weight")
        state["embed_tokens.embedding_frozen.weight"] = embed[:200].clone()
        state["embed_tokens.embedding_trainable.weight"] = embed[200:].clone()
    directory.mkdir(parents=True)
    save_file(state, directory / "model.safetensors")
    tokenizer.save_pretrained(directory)
    ids = tokenizer.convert_tokens_to_ids
    text_config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": c.vocab_size,
                   "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
                   "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
                   "num_key_value_heads": c.num_key_value_heads, "head_dim": c.head_dim, "hidden_act": "silu",
                   "max_position_embeddings": ORIGINAL_POSITIONS, "rms_norm_eps": c.rms_norm_eps,
                   "rope_theta": c.rope_parameters["rope_theta"], "rope_scaling": dict(ORIGINAL_ROPE),
                   "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True, "pretraining_tp": 1,
                   "bos_token_id": ids("<|begin_of_text|>"), "eos_token_id": ids("<|end_of_text|>"), "torch_dtype": "bfloat16"}
    config = {"model_type": "higgs_audio", "architectures": ["HiggsAudioModel"], "text_config": text_config,
              "audio_adapter_type": adapter,
              "audio_dual_ffn_layers": list(range(c.num_hidden_layers)) if dual_ffn_layers is None else dual_ffn_layers,
              "audio_ffn_hidden_size": c.hidden_size, "audio_ffn_intermediate_size": c.intermediate_size,
              "audio_decoder_proj_num_layers": 0, "audio_embed_avg": False, "use_delay_pattern": True,
              "use_audio_out_embed_projector": False, "use_audio_out_self_attention": 0, "use_rq_transformer": False,
              "skip_audio_tower": True, "encode_audio_in_tokens": True, "encode_whisper_embed": False,
              "audio_num_codebooks": c.num_codebooks, "audio_codebook_size": c.codebook_size - 2,
              "audio_stream_bos_id": c.audio_stream_bos_id, "audio_stream_eos_id": c.audio_stream_eos_id,
              "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>", "audio_eos_token_id": ids("<|audio_eos|>"),
              "audio_in_token": "<|AUDIO|>", "audio_in_token_idx": ids("<|AUDIO|>"),
              "audio_out_token": "<|AUDIO_OUT|>", "audio_out_token_idx": c.audio_token_id,
              "audio_out_bos_token": "<|audio_out_bos|>", "audio_out_bos_token_id": c.audio_bos_token_id,
              "pad_token_id": c.pad_token_id, "hidden_size": c.hidden_size, "torch_dtype": "bfloat16"}
    (directory / "config.json").write_text(json.dumps(config, indent=2))


_STAGES = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}


def original_codec_key(key: str, n_blocks: int) -> str:
    rules = [
        (r"^acoustic_encoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.",
         lambda m: f"encoder.block.{int(m[1]) + 1}.block.{int(m[2]) - 1}.block.{_STAGES[m[3]]}."),
        (r"^acoustic_encoder\.block\.(\d+)\.snake1\.", lambda m: f"encoder.block.{int(m[1]) + 1}.block.3."),
        (r"^acoustic_encoder\.block\.(\d+)\.conv1\.", lambda m: f"encoder.block.{int(m[1]) + 1}.block.4."),
        (r"^acoustic_encoder\.conv1\.", "encoder.block.0."),
        (r"^acoustic_encoder\.snake1\.", f"encoder.block.{n_blocks + 1}."),
        (r"^acoustic_encoder\.conv2\.", f"encoder.block.{n_blocks + 2}."),
        (r"^acoustic_decoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.",
         lambda m: f"decoder_2.model.{int(m[1]) + 1}.block.{int(m[2]) + 1}.block.{_STAGES[m[3]]}."),
        (r"^acoustic_decoder\.block\.(\d+)\.snake1\.", lambda m: f"decoder_2.model.{int(m[1]) + 1}.block.0."),
        (r"^acoustic_decoder\.block\.(\d+)\.conv_t1\.", lambda m: f"decoder_2.model.{int(m[1]) + 1}.block.1."),
        (r"^acoustic_decoder\.conv1\.", "decoder_2.model.0."),
        (r"^acoustic_decoder\.snake1\.", f"decoder_2.model.{n_blocks + 1}."),
        (r"^acoustic_decoder\.conv2\.", f"decoder_2.model.{n_blocks + 2}."),
        (r"^quantizer\.quantizers\.(\d+)\.codebook\.", r"quantizer.vq.layers.\1._codebook."),
        (r"^quantizer\.quantizers\.", "quantizer.vq.layers."),
        (r"^fc\.", "fc_prior."), (r"^fc1\.", "fc_post1."), (r"^fc2\.", "fc_post2."),
        (r"^((?:en|de)coder_semantic\..*?\.)(conv|conv1|conv2)\.(weight|bias)$", r"\1\2.conv.\3"),
        (r"^((?:en|de)coder_semantic\.)(conv|conv1|conv2)\.(weight|bias)$", r"\1\2.conv.\3"),
    ]
    for pattern, replacement in rules:
        new = re.sub(pattern, replacement, key)
        if new != key:
            return new
    return key


def save_original_codec(directory: Path, codec, *, target_bandwidths: list[float] | None = None, n_q: int | None = None) -> None:
    """model.pth with weight-norm (weight_g / weight_v) on the acoustic convs, plus Boson's config.json, whose
    target_bandwidths are the published ones (past what the quantizers give) unless given."""
    ratios = list(codec.config.acoustic_model_config.downsampling_ratios)
    state = {}
    for key, tensor in codec.state_dict().items():
        new = original_codec_key(key, len(ratios))
        if key.startswith("acoustic_") and key.endswith(".weight") and tensor.dim() == 3:
            g = tensor.norm(dim=(1, 2), keepdim=True)
            state[new[: -len("weight")] + "weight_g"], state[new[: -len("weight")] + "weight_v"] = g, tensor * 2.0
        elif "pos_conv_embed.conv.parametrizations.weight.original" in key:
            suffix = "weight_g" if key.endswith("original0") else "weight_v"
            state[key.split("parametrizations")[0] + suffix] = tensor
        else:
            state[new] = tensor
    state["fc1.weight"] = torch.zeros(3, 3)  # present in Boson's file, unused by the port
    directory.mkdir(parents=True)
    torch.save(state, directory / "model.pth")
    config = {"n_filters": 32, "D": codec.config.acoustic_model_config.hidden_size,
              "codebook_dim": codec.config.codebook_dim,
              "target_bandwidths": list(PUBLISHED_BANDWIDTHS if target_bandwidths is None else target_bandwidths),
              "ratios": ratios, "sample_rate": 24000, "bins": codec.config.codebook_size,
              "n_q": codec.config.num_quantizers if n_q is None else n_q, "semantic_techer": "hubert_base_general"}
    (directory / "config.json").write_text(json.dumps(config, indent=2))


_BUILT: dict[int, tuple[Path, Path]] = {}


def hub_dirs(seed: int = 0) -> tuple[Path, Path]:
    """The hub-layout tiny checkpoint, built once per test process (fixtures in several modules share it)."""
    import tempfile

    if seed not in _BUILT:
        _BUILT[seed] = save_hub_layout(Path(tempfile.mkdtemp(prefix="higgs-tiny-")), seed)
    return _BUILT[seed]
