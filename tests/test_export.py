"""``instanas export`` (export.py): a variant's controller and children in ONNX (run in
onnxruntime) and torch.export, equal to PyTorch within 1e-4, and a routing manifest that the
exported pipeline follows. Reads the smoke book's run (variant C is fine-tuned there)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from instanas_core.cli import main
from instanas_core.config_io import config_from_dict
from instanas_core.export import ExportConfig, ExportedRouter, export_variant, split_images
from instanas_core.policy import greedy_policy
from instanas_core.rundir import load_json
from instanas_core.stages.evaluate import load_trained
from instanas_core.train import policy_bits


@pytest.fixture(scope="module")
def onnx_export(book_smoke_run, tmp_path_factory):
    run, _ = book_smoke_run
    out = tmp_path_factory.mktemp("export") / "onnx"
    code = main(["export", "--run-dir", str(run), "--variant", "C", "--out", str(out), "--images", "6"])
    return run, out, code


def test_onnx_export_matches_pytorch_in_onnxruntime(onnx_export):
    run, out, code = onnx_export
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"].startswith("finetune-C") and manifest["format"] == "onnx"
    check = manifest["check"]
    assert check["passed"] and check["same_policies"]
    assert max(check["max_abs_error"].values()) <= 1e-4
    assert {f"child {i}" for i in range(len(manifest["children"]))} | {"controller", "routed pipeline"} == set(
        check["max_abs_error"]
    )
    assert sum(c["share"] for c in manifest["children"]) == pytest.approx(1.0)
    for c in manifest["children"]:
        assert (out / c["file"]).is_file() and policy_bits(torch.tensor([c["policy"]]))[0] == c["policy_bits"]


def test_exported_router_follows_the_controllers_policies(onnx_export):
    """Independently of the export's own check: the router's child for each image is the one whose
    policy is the PyTorch controller's greedy policy, and its logits are the meta-graph's."""
    run, out, _ = onnx_export
    manifest = json.loads((out / "manifest.json").read_text())
    cfg = config_from_dict(load_json(run / "finetune-C" / "config.json"))
    graph, controller, _ = load_trained(cfg, run, torch.device("cpu"), "finetune-C", "C")
    graph, controller = (
        graph.to(memory_format=torch.contiguous_format),
        controller.to(memory_format=torch.contiguous_format),
    )
    # the exporter's own images: their policies were exported
    x = split_images(cfg, "test", torch.device("cpu"), 6).contiguous()
    router = ExportedRouter(out)
    logits, which = router(x.numpy())
    with torch.no_grad():
        policy = greedy_policy(controller(x), graph)
        want = graph(x, policy)
    assert [manifest["children"][c]["policy_bits"] for c in which] == policy_bits(policy)
    np.testing.assert_allclose(logits, want.numpy(), atol=1e-4)


def test_an_architecture_that_was_not_exported_is_refused(onnx_export):
    run, out, _ = onnx_export
    router = ExportedRouter(out)
    router.index = {}  # as if the images came from a split whose architectures were not exported
    with pytest.raises(ValueError, match="does not hold"):
        router.route(np.zeros((1, 3, 32, 32), np.float32))


def test_torch_export_matches_pytorch(book_smoke_run, tmp_path):
    run, _ = book_smoke_run
    cfg = config_from_dict(load_json(run / "finetune-E" / "config.json"))
    manifest = export_variant(
        cfg, run, ExportConfig(variant="E", format="torch-export", splits=("test",), images=1, check_images=1), tmp_path
    )
    assert manifest["check"]["passed"] and all((tmp_path / c["file"]).suffix == ".pt2" for c in manifest["children"])


def test_unknown_format_is_refused_before_work():
    with pytest.raises(ValueError, match="--format 'tflite' is not one of onnx, torch-export"):
        ExportConfig(format="tflite")
