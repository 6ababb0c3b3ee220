"""`higgs model check` on tiny checkpoints: passes on good ones, fails clearly (one line per problem, its fix) on broken ones."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from higgs_cli.cli_model import model_app  # noqa: E402

from .higgs_tiny import build_models, hub_dirs, save_original_codec, save_original_lm  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")


def check(*args: str):
    return CliRunner().invoke(model_app, ["check", "--device", "cpu", "--seconds", "0.4", *args])


def test_a_good_checkpoint_passes_and_reports_its_render():
    model, codec = hub_dirs()
    result = check("--model", str(model), "--codec", str(codec), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["passed"] and doc["problems"] == []
    assert {"load", "render", "decode"} <= set(doc["timings"])
    assert any(line.startswith("rendered ") and "real-time factor" in line for line in doc["ok"])
    assert any("max_position_embeddings 2048 (the engine uses --context-limit instead)" in line for line in doc["ok"])


def test_broken_checkpoints_fail_with_one_line_per_problem_naming_the_fix(tmp_path):
    model, codec = hub_dirs()
    swapped = check("--model", str(codec), "--codec", str(model))
    assert swapped.exit_code == 1
    assert "holds a codec checkpoint, not a lm; pass it as --codec" in swapped.output
    assert "holds a lm checkpoint, not a codec; pass it as --model" in swapped.output
    missing = check("--model", str(tmp_path / "nowhere"), "--codec", str(codec))
    assert missing.exit_code == 1 and "not found" in missing.output
    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    config = json.loads((bad / "config.json").read_text())
    config["audio_token_id"] = config["audio_bos_token_id"]  # a tokenizer and a config that do not belong together
    (bad / "config.json").write_text(json.dumps(config))
    result = check("--model", str(bad), "--codec", str(codec))
    assert result.exit_code == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and "<|AUDIO_OUT|>" in problems[0] and "re-download or re-convert" in problems[0]
    assert "rendered" not in result.stdout  # no render on a broken checkpoint


def test_original_layout_checkpoints_convert_through_the_cli_and_render(tmp_path, monkeypatch):
    """The published quirks (dual_ffn_fast_forward in every layer; bandwidths up to 4 kbps next to n_q) convert and render."""
    from higgs_cli.cli import app

    monkeypatch.setenv("HIGGS_CACHE_DIR", str(tmp_path / "cache"))
    tokenizer, lm, codec = build_models(seed=5)
    save_original_lm(tmp_path / "orig-lm", tokenizer, lm)
    save_original_codec(tmp_path / "orig-codec", codec)
    runner = CliRunner()
    for kind in ("lm", "codec"):
        result = runner.invoke(model_app, ["convert", str(tmp_path / f"orig-{kind}"), str(tmp_path / kind)])
        assert result.exit_code == 0, result.output
    converted = json.loads((tmp_path / "codec" / "config.json").read_text())
    assert converted["target_bandwidths"] == [0.3]  # 2 quantizers x 6 bits x 25 Hz: the published 0.5..4 kbps are past them
    out = tmp_path / "x.wav"
    result = runner.invoke(app, ["generate", "--text", "Hello there.", "-o", str(out), "--json", "--quiet", "--engine", "higgs",
                                 "--model", str(tmp_path / "lm"), "--codec", str(tmp_path / "codec"), "--device", "cpu",
                                 "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chunks"][0]["frames"] > 0 and out.stat().st_size > 44


def test_a_partial_dual_ffn_checkpoint_is_refused_clearly(tmp_path):
    from higgs_cli import model as weights
    from higgs_cli.errors import UsageError

    tokenizer, lm, _ = build_models(seed=5)
    save_original_lm(tmp_path / "partial", tokenizer, lm, dual_ffn_layers=[0])
    with pytest.raises(UsageError, match="lists 1 of 2 layers"):
        weights.convert(tmp_path / "partial", tmp_path / "out")
    save_original_lm(tmp_path / "stack", tokenizer, lm, adapter="stack")
    with pytest.raises(UsageError, match="'stack' cannot be converted"):
        weights.convert(tmp_path / "stack", tmp_path / "out2")
