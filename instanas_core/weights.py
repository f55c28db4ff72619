"""Published weights (issue 16): trained models anyone can load without training again.

``instanas publish --run-dir RUN --model InstaNAS-C --name NAME`` writes, into ``weights/`` (or
``--out``), three files per model:

* ``NAME.pt``: a ``weights_only`` checkpoint (tensors, numbers and strings only, no pickled code):
  an InstaNAS variant's meta-graph and controller with the run's whole configuration, or a
  baseline's state dict with its name, resolution and class count;
* ``NAME.json``: the model card -- what the weights are (model, data set, preset, method), where
  they come from (run, commit, command), what they measured (test accuracy and latencies, from the
  run's ``results.csv``, each labelled with its kind) and the file's SHA-256;
* ``NAME.md``: the same card for a reader.

:func:`load_pretrained` returns a ready model in eval mode (:class:`~instanas_core.routing.InstaNASNet`
for a variant, the network for a baseline) and refuses a file whose hash does not match its card:
a truncated download or an edited file is never loaded silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from .config_io import config_from_dict, config_to_dict
from .ownership import claim, open_output_folder
from .results import read_results
from .rundir import load_checkpoint, load_json

__all__ = ["WEIGHTS_DIR", "WeightsError", "publish_weights", "load_pretrained", "list_pretrained", "read_card"]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
FORMAT = 1


class WeightsError(ValueError):
    """Weights that cannot be published or loaded as asked (unknown name, hash mismatch, ...)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _folder(weights_dir: str | os.PathLike | None) -> Path:
    return Path(weights_dir) if weights_dir is not None else Path(os.environ.get("INSTANAS_WEIGHTS", WEIGHTS_DIR))


def list_pretrained(weights_dir: str | os.PathLike | None = None) -> list[str]:
    """The names of the published models in ``weights_dir`` (default ``weights/``)."""
    folder = _folder(weights_dir)
    return sorted(p.stem for p in folder.glob("*.json") if (folder / f"{p.stem}.pt").is_file())


def read_card(name: str, weights_dir: str | os.PathLike | None = None) -> dict:
    """Model ``name``'s card (``NAME.json``)."""
    folder = _folder(weights_dir)
    path = folder / f"{name}.json"
    if not path.is_file():
        known = ", ".join(list_pretrained(folder)) or "none"
        raise WeightsError(f"no published model {name!r} in {folder} (no {path.name}); published there: {known}.")
    return load_json(path)


def _instanas_state(run: Path, letter: str) -> tuple[dict, dict]:
    folder = run / f"finetune-{letter}"
    if not (folder / "last.pt").is_file():
        raise WeightsError(f"{folder / 'last.pt'} does not exist: variant {letter} was not fine-tuned in {run}.")
    cfg = config_from_dict(load_json(folder / "config.json"), source=folder / "config.json")
    ckpt = load_checkpoint(folder / "last.pt")
    state = {
        "format": FORMAT,
        "kind": "instanas",
        "config": json.dumps(config_to_dict(cfg)),
        "meta_graph": ckpt["meta_graph"],
        "controller": ckpt["controller"],
    }
    return state, {"kind": "instanas", "folder": folder, "cfg": cfg}


def _baseline_state(run: Path, name: str) -> tuple[dict, dict]:
    folder = run / "baselines" / name
    summary = load_json(folder / "summary.json") if (folder / "summary.json").is_file() else {}
    if not summary.get("finished") or not (folder / "last.pt").is_file():
        raise WeightsError(
            f"{folder} holds no finished baseline (summary.json with finished=true and last.pt): "
            f"nothing to publish under {name!r}. Models of this run: InstaNAS-<L> or a folder of {run / 'baselines'}."
        )
    cfg = config_from_dict(load_json(folder / "config.json"), source=folder / "config.json")
    info = cfg.experiment.info
    state = {
        "format": FORMAT,
        "kind": "baseline",
        "model": summary["model"],
        "resolution": info.resolution,
        "num_classes": info.num_classes,
        "state_dict": load_checkpoint(folder / "last.pt")["model"],
    }
    return state, {"kind": "baseline", "folder": folder, "cfg": cfg}


def publish_weights(
    run_dir: str | os.PathLike,
    model: str,
    name: str,
    out: str | os.PathLike | None = None,
    command: str = "",
) -> Path:
    """Write model ``model`` of a finished run (``InstaNAS-<L>`` or a baseline folder's name) as
    ``NAME.pt`` + card into ``out`` (default ``weights/``); returns the card's path."""
    from .data import dataset_title
    from .presets import method_label

    run = Path(run_dir)
    if not name or Path(name).name != name or name.endswith((".pt", ".json")):
        raise WeightsError(f"--name must be a bare file stem such as 'cifar10-cpu-instanas-c', got {name!r}.")
    if model.startswith("InstaNAS-"):
        state, what = _instanas_state(run, model.split("-", 1)[1])
    else:
        state, what = _baseline_state(run, model)
    folder = open_output_folder(_folder(out), "publish")
    path = claim(folder / f"{name}.pt")
    torch.save(state, path)
    rows = [r for r in read_results(run) if r.name == model] if (run / "results.csv").is_file() else []
    env_file = what["folder"] / "environment.json"
    env = load_json(env_file) if env_file.is_file() else {}
    cfg = what["cfg"]
    card = {
        "name": name,
        "file": path.name,
        "sha256": _sha256(path),
        "bytes": path.stat().st_size,
        "format": FORMAT,
        "kind": what["kind"],
        "model": model,
        "dataset": cfg.experiment.dataset,
        "data": dataset_title(cfg.experiment.dataset, cfg.experiment.data_root),
        "preset": cfg.preset,
        "method": method_label(cfg) if what["kind"] == "instanas" else "a static network, trained like the baselines",
        "width_mult": cfg.experiment.width_mult,
        "run": str(run),
        "commit": env.get("git_commit"),
        "command": command,
        "results": [
            {
                "accuracy_pct": r.accuracy,
                "latency_ms": r.latency_mean_ms,
                "latency_kind": r.latency_kind,
                "test_images": r.extra.get("test_n"),
                "device": r.device,
            }
            for r in rows
        ],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    card_path = claim(folder / f"{name}.json")
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    claim(folder / f"{name}.md").write_text(_card_markdown(card))
    return card_path


def _card_markdown(card: dict) -> str:
    lines = [
        f"# {card['name']}",
        "",
        f"{card['model']} trained on {card['data']} (preset `{card['preset']}`, width {card['width_mult']}; "
        f"{card['method']}).",
        "",
        f"- file: `{card['file']}` ({card['bytes'] / 1e6:.1f} MB), SHA-256 `{card['sha256']}`",
        f"- commit: {card['commit']}; made by: `{card['command'] or 'instanas publish'}`",
        "- load: `instanas_core.load_pretrained(" + repr(card["name"]) + ")`",
        "",
        "| test accuracy % | latency ms | latency | test images | device |",
        "|---|---|---|---|---|",
    ]
    for r in card["results"]:
        lines.append(
            f"| {r['accuracy_pct']:.2f} | {r['latency_ms']:.3f} | {r['latency_kind']} | {r['test_images']} | {r['device']} |"
        )
    return "\n".join(lines) + "\n"


def load_pretrained(name: str, weights_dir: str | os.PathLike | None = None, device: str = "cpu") -> nn.Module:
    """Published model ``name``, ready in eval mode: an :class:`~instanas_core.routing.InstaNASNet`
    (``forward(x) -> (logits, policy)``) or a baseline network. A file whose SHA-256 differs from
    its card's is refused."""
    from .baselines import build_baseline
    from .routing import InstaNASNet
    from .train import build_models

    folder = _folder(weights_dir)
    card = read_card(name, folder)
    path = folder / card["file"]
    if not path.is_file():
        raise WeightsError(f"{path} (the weights of {name!r}, named by its card) is missing.")
    digest = _sha256(path)
    if digest != card["sha256"]:
        raise WeightsError(
            f"{path} does not match its card {name}.json: SHA-256 {digest[:16]}... where the card says "
            f"{card['sha256'][:16]}.... The file is damaged or was changed after publishing; refusing to load it. "
            "Get the file again (git checkout, or download it anew)."
        )
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("format") != FORMAT:
        raise WeightsError(f"{path} is in weights format {state.get('format')!r}; this code reads format {FORMAT}.")
    if state["kind"] == "baseline":
        model = build_baseline(state["model"], int(state["resolution"]), int(state["num_classes"]))
        model.load_state_dict(state["state_dict"])
        return model.to(device).eval()
    cfg = config_from_dict(json.loads(state["config"]), source=path)
    graph, controller = build_models(cfg.experiment, torch.device(device))
    graph.load_state_dict(state["meta_graph"])
    controller.load_state_dict(state["controller"])
    return InstaNASNet(controller, graph).eval()
