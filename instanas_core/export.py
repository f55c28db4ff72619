"""Export a trained variant for use outside this package: ONNX or ``torch.export`` (paper §3.1,
"inference phase": the controller picks a child per image, and only that child runs).

``instanas export --run-dir RUN --variant A --format {onnx,torch-export} --out DIR`` writes

* ``controller.<ext>`` -- image (B, 3, H, W), normalised as the data set's evaluation transform
  does, to module probabilities (B, T, K);
* ``child_NNN.<ext>`` -- one static network per distinct architecture the variant's controller
  deploys (greedy decoding) on the images of a split (default: validation and test), each
  extracted from the meta-graph (:meth:`MetaGraph.extract_child`), image -> logits (B, classes);
* ``manifest.json`` -- the routing: each child's policy (T x K bits, row-major), its share of the
  images, and the run's configuration, from which the decoding rule (``p > 0.5``, then the default
  module in a shape-changing cell that selects none: :func:`~instanas_core.policy.greedy_policy`)
  is rebuilt; plus ``check``: every exported file run in its runtime against PyTorch.

:class:`ExportedRouter` runs the exported pipeline (onnxruntime, or ``torch.export.load``).
``torch.jit.script`` is not offered: the meta-graph's modules are not TorchScript-compatible
(``InvertedResidualBranch ... has no attribute '__call__'``), and TorchScript is deprecated in
PyTorch in favour of ``torch.export``.

ONNX files are written by PyTorch's TorchScript-based exporter (``dynamo=False``): the dynamo
exporter gives the same outputs (checked to 1e-6 on children of this meta-graph) but took about
ten times longer per child (50-65 s against 6-7 s on the 2-core build machine).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .config import Config
from .config_io import config_from_dict, config_to_dict
from .ownership import claim, open_output_folder
from .policy import greedy_policy
from .rundir import stage_dir
from .train import build_split, make_loader, policy_bits
from .train.data import unpack_batch

__all__ = [
    "EXPORT_FORMATS",
    "ExportConfig",
    "export_variant",
    "ExportedRouter",
    "check_export",
    "onnx_callable",
    "split_images",
]

EXPORT_FORMATS = ("onnx", "torch-export")
_EXT = {"onnx": "onnx", "torch-export": "pt2"}
TOLERANCE = 1e-4  # max |exported - PyTorch| on logits and probabilities


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    variant: str = "A"
    format: str = "onnx"
    splits: tuple[str, ...] = ("val", "test")  # the images whose architectures are exported
    check_images: int = 64  # test images the routed pipeline is checked on (0: all)
    images: int | None = None  # the first N images of each split decide the architectures (None: all)

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise ValueError(f"--format {self.format!r} is not one of {', '.join(EXPORT_FORMATS)}.")


def _source(run_dir: Path, variant: str) -> str:
    """The fine-tuned variant (``RUN/finetune-<variant>/``, as the book names it, or any fine-tune
    folder whose saved configuration is that variant's) when one finished, else the search's."""
    from .rundir import load_json

    folders = [stage_dir(run_dir, f"finetune-{variant}")] + sorted(Path(run_dir).glob("finetune*"))
    for folder in folders:
        saved = folder / "config.json"
        if (folder / "last.pt").is_file() and saved.is_file():
            if config_from_dict(load_json(saved), source=saved).finetune.variant == variant:
                return folder.name
    return "search"


def _write(module: torch.nn.Module, example: torch.Tensor, path: Path, fmt: str, output: str) -> None:
    module = module.eval()
    if fmt == "onnx":
        with warnings.catch_warnings():  # the TorchScript-based exporter's deprecation notice
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                input_names=["image"],
                output_names=[output],
                dynamic_axes={"image": {0: "batch"}, output: {0: "batch"}},
                opset_version=17,
            )
    else:
        batch = torch.export.Dim("batch", min=1, max=4096)
        torch.export.save(torch.export.export(module, (example,), dynamic_shapes=({0: batch},)), str(path))


def _onnx_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as every latency in this package: batch 1, one thread
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x})[0]


def onnx_callable(module: torch.nn.Module, example: torch.Tensor, path: Path, output: str = "out"):
    """``module`` exported to ONNX at ``path`` and loaded in onnxruntime (CPU, one thread): a
    function numpy (B, ...) -> numpy output."""
    _write(module, example, path, "onnx", output)
    return _onnx_session(path)


class ExportedRouter:
    """The exported pipeline of a folder ``export_variant`` wrote: ``__call__(images)`` (B, 3, H, W)
    float32 numpy -> (logits (B, classes), child index (B,)). Images whose architecture was not
    exported are refused, naming how to export it."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "manifest.json").read_text())
        self.space = config_from_dict(self.manifest["config"]).experiment.space()
        self.fmt = self.manifest["format"]
        self.controller = self._load(self.manifest["controller"])
        self.children = [self._load(c["file"]) for c in self.manifest["children"]]
        self.index = {c["policy_bits"]: i for i, c in enumerate(self.manifest["children"])}

    def _load(self, name: str):
        path = self.folder / name
        if self.fmt == "onnx":
            return _onnx_session(path)
        program = torch.export.load(str(path)).module()
        return lambda x: program(torch.from_numpy(x)).detach().numpy()

    def route(self, images: np.ndarray) -> np.ndarray:
        """The child index of each image: the controller's greedy policy looked up. (B,)."""
        probs = torch.from_numpy(self.controller(images))  # (B, T, K)
        keys = policy_bits(greedy_policy(probs, self.space))
        missing = [k for k in keys if k not in self.index]
        if missing:
            raise ValueError(
                f"{len(missing)} of {len(keys)} images get an architecture that {self.folder} does not hold "
                f"(it holds the {len(self.index)} the controller deployed on the {self.manifest['splits']} split(s)); "
                "export again with the split these images come from."
            )
        return np.array([self.index[k] for k in keys])

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        which = self.route(images)
        logits = np.zeros((len(images), self.space.num_classes), np.float32)
        for c in np.unique(which):
            rows = np.nonzero(which == c)[0]
            logits[rows] = self.children[c](np.ascontiguousarray(images[rows]))
        return logits, which


def split_images(cfg: Config, split: str, device, limit: int | None) -> torch.Tensor:
    """The first ``limit`` (None: all) images of ``split`` as the evaluation transform gives them,
    in the data set's order. (N, 3, H, W)."""
    exp = cfg.experiment
    loader = make_loader(build_split(exp, split, augment=False), 256, False, 0, exp, device, train=False)
    return torch.cat([unpack_batch(b, ("image", "label"))["image"] for b in loader])[:limit]  # (N, 3, H, W)


@torch.no_grad()
def check_export(folder: Path, meta_graph, controller, images: torch.Tensor) -> dict:
    """Every exported file against PyTorch: the controller and each child on ``images`` (each child
    on the images routed to it, or on all when none is), and the routed pipeline end to end
    (controller -> policy -> child) against the meta-graph under the same greedy policies."""
    router = ExportedRouter(folder)
    x = images.float().contiguous()  # (N, 3, H, W), NCHW as exported
    probs = controller(x)  # (N, T, K)
    err = {"controller": float(np.abs(router.controller(x.numpy()) - probs.numpy()).max())}
    logits, which = router(x.numpy())
    policy = greedy_policy(probs, meta_graph)
    reference = meta_graph(x, policy, execution="masked")  # (N, classes): every module, then masked
    for i, child in enumerate(router.children):
        rows = np.nonzero(which == i)[0]
        xs = x[rows] if len(rows) else x
        want = meta_graph(xs, torch.tensor(router.manifest["children"][i]["policy"]).expand(len(xs), -1, -1).float())
        err[f"child {i}"] = float(np.abs(child(xs.numpy()) - want.numpy()).max())
    err["routed pipeline"] = float(np.abs(logits - reference.numpy()).max())
    same_policy = bool(
        all(
            policy_bits(policy[r : r + 1])[0] == router.manifest["children"][c]["policy_bits"]
            for r, c in enumerate(which)
        )
    )
    return {
        "images": int(len(x)),
        "max_abs_error": err,
        "tolerance": TOLERANCE,
        "same_policies": same_policy,
        "passed": bool(same_policy and max(err.values()) <= TOLERANCE),
    }


def export_variant(cfg: Config, run_dir: str | Path, export_cfg: ExportConfig, out: str | Path) -> dict:
    """Export ``export_cfg.variant`` of ``run_dir`` (see the module docstring); returns the manifest."""
    from .stages.evaluate import load_trained

    run_dir, out = Path(run_dir), Path(out)
    device = torch.device("cpu")
    source = _source(run_dir, export_cfg.variant)
    meta_graph, controller, what = load_trained(cfg, run_dir, device, source, export_cfg.variant)
    # Exported models are NCHW float32 on the CPU: the layout every runtime reads.
    meta_graph, controller = (
        meta_graph.float().to(memory_format=torch.contiguous_format).eval(),
        controller.float().to(memory_format=torch.contiguous_format).eval(),
    )
    images = {split: split_images(cfg, split, device, export_cfg.images) for split in export_cfg.splits}
    with torch.no_grad():
        policies = torch.cat([greedy_policy(controller(x.float()), meta_graph) for x in images.values()])  # (N, T, K)
    keys = policy_bits(policies)
    distinct, counts = np.unique(keys, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    out = open_output_folder(out, "export")
    ext = _EXT[export_cfg.format]
    # Two images: torch.export specialises a dimension of size 1, and the batch must stay dynamic.
    example = images[export_cfg.splits[-1]][:1].float().repeat(2, 1, 1, 1).contiguous()  # (2, 3, H, W)
    _write(controller, example, claim(out / f"controller.{ext}"), export_cfg.format, "probs")
    children = []
    for n, i in enumerate(order):
        row = policies[keys.index(distinct[i])]  # (T, K)
        name = f"child_{n:03d}.{ext}"
        _write(meta_graph.extract_child(row), example, claim(out / name), export_cfg.format, "logits")
        children.append(
            {
                "file": name,
                "policy": row.int().tolist(),
                "policy_bits": str(distinct[i]),
                "share": float(counts[i] / len(keys)),
            }
        )
    manifest = {
        "format": export_cfg.format,
        "variant": export_cfg.variant,
        "source": what,
        "run_dir": str(run_dir),
        "splits": list(export_cfg.splits),
        "images_per_split": export_cfg.images,
        "input": "image (B, 3, H, W) float32, normalised as the data set's evaluation transform; NCHW",
        "decoding": "policy = controller probabilities > 0.5, then the default module in every shape-changing cell "
        "that selects none (instanas_core.policy.greedy_policy); the child whose policy_bits match runs",
        "controller": f"controller.{ext}",
        "children": children,
        "config": config_to_dict(cfg),
    }
    manifest_path = claim(out / "manifest.json")
    manifest_path.write_text(json.dumps(manifest, indent=1))
    test = images.get("test", next(iter(images.values())))
    n = len(test) if export_cfg.check_images == 0 else min(export_cfg.check_images, len(test))
    manifest["check"] = check_export(out, meta_graph, controller, test[:n])
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest
