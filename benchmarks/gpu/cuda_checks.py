"""CUDA checks for the device machine (run by ``benchmarks/gpu/run.sh``; prints, asserts nothing
that a CPU-only CI could check).

* the subset, masked and extracted-child paths agree on CUDA (eval, fp32 with TF32 off and on);
* in train mode with every module selected, subset and masked give the same gradients;
* ``MetaGraph.forward`` timed at batch 64, subset vs masked (the issue's independent check).
"""

from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn.functional as F

from instanas_core.meta_graph import build_meta_graph
from instanas_core.policy import sample_random_policy


def _time(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> int:
    dev = torch.device("cuda")
    report = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "cudnn": torch.backends.cudnn.version()}
    gen = torch.Generator().manual_seed(0)
    for width in (0.5, 1.0):
        torch.manual_seed(0)
        graph = build_meta_graph(32, width).to(dev).eval()
        x = torch.randn(64, 3, 32, 32, device=dev)
        policy = sample_random_policy(graph, 64, gen, density=(0.05, 0.6)).to(dev)
        for tf32 in (False, True):
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            with torch.inference_mode():
                sub = graph(x, policy, "subset")  # (64, 10)
                mas = graph(x, policy, "masked")
                child = torch.cat([graph.extract_child(policy[i], share_weights=True)(x[i:i + 1]) for i in range(8)])
            report[f"w{width}_tf32={tf32}_subset_vs_masked_max_abs"] = float((sub - mas).abs().max())
            report[f"w{width}_tf32={tf32}_child_vs_subset_max_abs"] = float((child - sub[:8]).abs().max())
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        graph.train()
        y = torch.randint(0, 10, (64,), device=dev)
        ones = torch.ones_like(policy)
        grads = {}
        for execution in ("subset", "masked"):
            graph.zero_grad(set_to_none=True)
            F.cross_entropy(graph(x, ones, execution), y).backward()
            grads[execution] = torch.cat([p.grad.flatten() for p in graph.parameters() if p.grad is not None])
        report[f"w{width}_train_all_modules_grad_max_abs_diff"] = float((grads["subset"] - grads["masked"]).abs().max())
        graph.eval()
        with torch.inference_mode():
            sub_ms = _time(lambda: graph(x, policy, "subset"))
            mas_ms = _time(lambda: graph(x, policy, "masked"))
        report[f"w{width}_batch64_forward_ms"] = {"subset": sub_ms, "masked": mas_ms, "masked_over_subset": mas_ms / sub_ms,
                                                   "density": float(policy.mean())}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
