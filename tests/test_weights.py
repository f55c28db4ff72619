"""Published weights (issue 16): ``instanas publish`` writes a weights_only checkpoint with a model
card; ``load_pretrained`` gives back a model that predicts exactly what the run measured, and refuses
a file whose hash does not match its card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from instanas_core import load_pretrained
from instanas_core.cli import main
from instanas_core.config_io import config_from_dict
from instanas_core.results import read_results
from instanas_core.rundir import load_json
from instanas_core.train import build_split
from instanas_core.weights import WeightsError, list_pretrained


@pytest.fixture(scope="module")
def published(book_smoke_run, tmp_path_factory):
    run, _ = book_smoke_run
    out = tmp_path_factory.mktemp("weights")
    for model, name in (("InstaNAS-C", "smoke-instanas-c"), ("mobilenetv2-1.0", "smoke-mobilenetv2-1.0")):
        argv = ["publish", "--run-dir", str(run), "--model", model, "--name", name, "--out", str(out)]
        assert main(argv) == 0
    return run, out


def _test_images(run):
    cfg = config_from_dict(load_json(run / "finetune-C" / "config.json"))
    test = build_split(cfg.experiment, "test", augment=False)
    return torch.stack([test[i][0] for i in range(len(test))]), test.targets  # (N, 3, H, W), (N,)


def test_published_variant_predicts_what_the_run_measured(published):
    run, out = published
    assert list_pretrained(out) == ["smoke-instanas-c", "smoke-mobilenetv2-1.0"]
    card = json.loads((out / "smoke-instanas-c.json").read_text())
    assert card["kind"] == "instanas" and card["preset"] == "smoke" and card["method"] == "paper-exact method"
    assert {r["latency_kind"] for r in card["results"]} <= {"estimated", "measured"} and card["results"]
    assert "load_pretrained('smoke-instanas-c')" in (out / "smoke-instanas-c.md").read_text()
    model = load_pretrained("smoke-instanas-c", weights_dir=out)
    assert not model.training
    x, _ = _test_images(run)
    with torch.no_grad():
        logits, policy = model(x)
    with np.load(run / "evaluate-C" / "records.npz") as rec:
        assert np.array_equal(logits.argmax(1).numpy(), rec["prediction"])
        assert np.array_equal(policy.numpy(), rec["policy"])


def test_published_baseline_reaches_its_recorded_accuracy(published):
    run, out = published
    model = load_pretrained("smoke-mobilenetv2-1.0", weights_dir=out)
    x, y = _test_images(run)
    with torch.no_grad():
        accuracy = 100.0 * float((model(x).argmax(1) == y).float().mean())
    row = next(r for r in read_results(run) if r.name == "mobilenetv2-1.0")
    assert accuracy == pytest.approx(row.accuracy, abs=1e-9)


def test_a_file_that_does_not_match_its_card_is_refused(published, tmp_path):
    _, out = published
    for suffix in (".pt", ".json", ".md"):
        (tmp_path / f"smoke-instanas-c{suffix}").write_bytes((out / f"smoke-instanas-c{suffix}").read_bytes())
    data = bytearray((tmp_path / "smoke-instanas-c.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "smoke-instanas-c.pt").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match its card smoke-instanas-c.json"):
        load_pretrained("smoke-instanas-c", weights_dir=tmp_path)
    with pytest.raises(WeightsError, match="no published model 'nope'.*published there: smoke-instanas-c"):
        load_pretrained("nope", weights_dir=tmp_path)


def test_publishing_an_unfinished_model_says_so(published, tmp_path, capsys):
    run, _ = published
    argv = ["publish", "--run-dir", str(run), "--model", "resnet-nowhere", "--name", "x", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds no finished baseline" in err and not (tmp_path / "x.pt").exists()
