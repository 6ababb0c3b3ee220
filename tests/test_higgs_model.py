"""Loading and converting Higgs Audio v2 checkpoints: layouts, original-layout conversion, offline errors, `higgs model`."""

from __future__ import annotations

import json

import pytest

from higgs_cli import model as weights
from higgs_cli.errors import EngineUnavailable, UsageError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from higgs_cli.options import HiggsSettings  # noqa: E402

from .higgs_tiny import CODES, build_models, hub_dirs, save_original_codec, save_original_lm  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dirs():
    return hub_dirs()


@pytest.fixture
def tiny_settings(tiny_dirs):
    return HiggsSettings(model=str(tiny_dirs[0]), codec=str(tiny_dirs[1]), device="cpu", max_new_tokens=16)


@pytest.fixture
def loaded(tiny_settings):
    return weights.load(tiny_settings)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A tiny checkpoint in Boson's original layout, plus the models it was written from."""
    root = tmp_path_factory.mktemp("original")
    tokenizer, lm, codec = build_models(seed=3)
    save_original_lm(root / "lm", tokenizer, lm)
    save_original_codec(root / "codec", codec)
    return root, lm, codec


def test_layouts_are_recognised(tiny_dirs, original, tmp_path):
    model_dir, codec_dir = tiny_dirs
    root = original[0]
    assert weights.layout(model_dir) == "lm"
    assert weights.layout(codec_dir) == "codec"
    assert weights.layout(root / "lm") == "original-lm"
    assert weights.layout(root / "codec") == "original-codec"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UsageError, match="not a Higgs Audio v2 checkpoint"):
        weights.layout(tmp_path)


def test_original_lm_converts_to_the_same_model(original, tmp_path):
    from transformers import HiggsAudioV2ForConditionalGeneration

    root, lm, _ = original
    assert weights.convert(root / "lm", tmp_path / "lm") == "lm"
    converted = HiggsAudioV2ForConditionalGeneration.from_pretrained(tmp_path / "lm")
    expected = lm.state_dict()
    for key, tensor in converted.state_dict().items():
        torch.testing.assert_close(tensor, expected[key], msg=key)
    assert converted.config.codebook_size == lm.config.codebook_size
    assert converted.config.audio_delay_token_id == lm.config.audio_delay_token_id


def test_original_codec_converts_and_decodes_the_same(original, tmp_path):
    from transformers import HiggsAudioV2TokenizerModel

    root, _, codec = original
    assert weights.convert(root / "codec", tmp_path / "codec") == "codec"
    converted = HiggsAudioV2TokenizerModel.from_pretrained(tmp_path / "codec").eval()
    codes = torch.randint(0, CODES, (1, 2, 12))
    with torch.no_grad():
        torch.testing.assert_close(converted.decode(codes).audio_values, codec.decode(codes).audio_values)
        wav = torch.randn(1, 1, 24000)
        assert torch.equal(converted.encode(wav).audio_codes, codec.encode(wav).audio_codes)
    assert (tmp_path / "codec" / "preprocessor_config.json").exists()


def test_local_original_dir_is_converted_once_into_the_cache(original, monkeypatch, tmp_path):
    monkeypatch.setenv("HIGGS_CACHE_DIR", str(tmp_path))
    first = weights.ready_dir(str(original[0] / "codec"), None, "codec")
    assert first.parent == tmp_path / "converted" and weights.layout(first) == "codec"
    stamp = (first / "config.json").stat().st_mtime_ns
    assert weights.ready_dir(str(original[0] / "codec"), None, "codec") == first
    assert (first / "config.json").stat().st_mtime_ns == stamp


def test_wrong_kind_and_missing_dirs_name_the_fix(tiny_dirs, tmp_path):
    model_dir, codec_dir = tiny_dirs
    with pytest.raises(UsageError, match="--codec"):
        weights.ready_dir(str(codec_dir), None, "lm")
    with pytest.raises(UsageError, match="not found"):
        weights.locate(str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="already in the transformers layout"):
        weights.convert(model_dir, tmp_path / "out")


def test_offline_missing_weights_say_how_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(EngineUnavailable, match="higgs model download"):
        weights.locate("bosonai/higgs-audio-v2-generation-3B-base")
    assert not weights.weights_present("bosonai/higgs-audio-v2-generation-3B-base")


def test_processor_is_assembled_from_local_parts(loaded):
    proc = loaded.processor
    assert proc.audio_tokenizer is loaded.codec
    assert proc.feature_extractor.hop_length == 960
    assert proc.audio_stream_bos_id == CODES and proc.audio_stream_eos_id == CODES + 1
    assert proc.tokenizer.convert_tokens_to_ids("<|AUDIO_OUT|>") == loaded.model.config.audio_token_id


def test_models_load_once_per_process(tiny_settings):
    assert weights.load(tiny_settings) is weights.load(tiny_settings)


def test_cli_convert_and_info(original, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from higgs_cli.cli_model import model_app

    monkeypatch.setenv("HIGGS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    runner = CliRunner()
    result = runner.invoke(model_app, ["convert", str(original[0] / "codec"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("out")
    bad = runner.invoke(model_app, ["convert", str(tmp_path / "missing"), str(tmp_path / "x")])
    assert bad.exit_code == 2 and "not a directory" in bad.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    taken = runner.invoke(model_app, ["convert", str(original[0] / "codec"), str(tmp_path / "mine")])
    assert taken.exit_code == 2 and "not empty" in taken.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    listed = runner.invoke(model_app, ["info", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


# --- downloads: only what the loaders read --------------------------------------------------------------
def test_downloads_take_the_indexed_shards_and_loader_files_only():
    from higgs_cli.downloads import loader_files

    # the LM repo as republished in the transformers layout, with leftovers a snapshot download would fetch too
    shards = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    listing = {name: 4_000_000_000 for name in shards}
    listing |= {f"model-0000{i}-of-00004.safetensors": 3_000_000_000 for i in (1, 2, 3, 4)}  # a set the index does not name
    listing |= {"config.json": 2_000, "generation_config.json": 300, "model.safetensors.index.json": 30_000,
                "tokenizer.json": 9_000_000, "tokenizer_config.json": 50_000, "special_tokens_map.json": 500,
                "chat_template.jinja": 3_000, "README.md": 9_000, "figures/arch.png": 2_000_000, ".gitattributes": 1_500}
    index = {"weight_map": {"a": shards[0], "b": shards[1], "c": shards[2], "d": shards[0]}}
    got = loader_files(listing, {"model_type": "higgs_audio_v2"}, index)
    assert sorted(got) == sorted(["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                  "special_tokens_map.json", "chat_template.jinja", "model.safetensors.index.json", *shards])


def test_downloads_skip_the_legacy_codec_weights_unless_they_are_the_only_ones():
    from higgs_cli.downloads import loader_files

    republished = {"config.json": 1_000, "model.safetensors": 800_000_000, "preprocessor_config.json": 300,
                   "model.pth": 1_000_000_000, "README.md": 2_000}
    assert loader_files(republished, {"model_type": "higgs_audio_v2_tokenizer"}) == [
        "config.json", "preprocessor_config.json", "model.safetensors"]
    original = {"config.json": 300, "model.pth": 1_000_000_000, "README.md": 2_000}
    assert loader_files(original, {"n_q": 8, "ratios": [8, 5, 4, 2, 3]}) == ["config.json", "model.pth"]


def test_an_older_original_snapshot_in_the_hub_cache_still_converts(original, monkeypatch, tmp_path):
    """A user's cache from before the repos were republished in place holds Boson's layout under the hub id."""
    import shutil

    hub = tmp_path / "hub"
    repo = hub / "models--bosonai--higgs-audio-v2-tokenizer"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(original[0] / "codec", repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HIGGS_CACHE_DIR", str(tmp_path / "higgs"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    converted = weights.ready_dir("bosonai/higgs-audio-v2-tokenizer", None, "codec")
    assert converted.parent == tmp_path / "higgs" / "converted" and weights.layout(converted) == "codec"


def test_fetch_says_the_size_first_and_asks_the_hub_for_the_loader_files_only(monkeypatch, tmp_path):
    """The hub is replaced by a listing of the republished codec repo; what we ask it for is checked."""
    import huggingface_hub
    from huggingface_hub.hf_api import RepoSibling

    from higgs_cli import downloads

    siblings = [RepoSibling("config.json", size=900), RepoSibling("model.safetensors", size=805_000_000),
                RepoSibling("preprocessor_config.json", size=300), RepoSibling("model.pth", size=1_010_000_000),
                RepoSibling("README.md", size=4_000)]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "higgs_audio_v2_tokenizer"}))
    events = []

    class Hub:
        def model_info(self, repo_id, revision=None, files_metadata=False):
            assert files_metadata
            return type("Info", (), {"siblings": siblings})()

    def snapshot(repo_id, revision=None, allow_patterns=None):
        events.append(("download", sorted(allow_patterns)))
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "HfApi", Hub)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo_id, name, revision=None: str(tmp_path / name))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    assert downloads.fetch("bosonai/higgs-audio-v2-tokenizer", None, lambda line: events.append(("say", line))) == tmp_path
    assert events[0] == ("say", "downloading bosonai/higgs-audio-v2-tokenizer: 3 files, 805 MB (skipping 1.0 GB the loaders do not read)")
    assert events[1] == ("download", ["config.json", "model.safetensors", "preprocessor_config.json"])
