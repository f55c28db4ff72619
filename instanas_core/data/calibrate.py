"""Calibration of the synthetic-difficulty data set: train one small, fixed CNN on its training
split and measure the test error per difficulty level, which must rise with the level for the
levels to mean what they say (used to check the paper's instance-awareness claim, §4.3, against
a known ground truth). Sized for a laptop: the defaults run in under a minute on one CPU core. ``python -m instanas_core.data.calibrate`` prints the table quoted in ``synthetic.py``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from torch import nn

from .loader import build_loader
from .registry import build_dataset
from .synthetic import LEVELS

__all__ = ["Calibration", "calibrate_synthetic"]


@dataclass(frozen=True)
class Calibration:
    """Test error (fraction) per difficulty level 0..4, with the setting that produced it."""

    error_by_level: tuple[float, ...]
    count_by_level: tuple[int, ...]
    train_error: float
    seed: int
    n_train: int
    epochs: int
    seconds: float

    def is_monotonic(self) -> bool:
        e = self.error_by_level
        return all(a < b for a, b in zip(e, e[1:]))

    def table(self) -> str:
        rows = [
            f"level {lvl}: error {err:6.1%}  ({n} images)"
            for lvl, (err, n) in enumerate(zip(self.error_by_level, self.count_by_level))
        ]
        return "\n".join(rows)


def _small_cnn(num_classes: int) -> nn.Module:
    """Three conv-BN-ReLU stages (16, 32, 64 channels) with max-pooling, then a linear head."""

    def stage(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *stage(3, 16),
        nn.MaxPool2d(2),  # (B, 16, 16, 16)
        *stage(16, 32),
        nn.MaxPool2d(2),  # (B, 32, 8, 8)
        *stage(32, 64),
        nn.AdaptiveAvgPool2d(1),  # (B, 64, 1, 1)
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def calibrate_synthetic(
    seed: int = 0,
    n_train: int = 4000,
    n_test: int = 1000,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 0.05,
    threads: int = 1,
) -> Calibration:
    """Train the fixed CNN on ``n_train`` synthetic training images (augmented: random crop
    with padding, flip) and return its error per level on ``n_test`` test images.

    ``threads`` is torch's intra-op thread count during the run (restored afterwards). One
    thread is the default: the numbers then do not depend on the machine's core count, and a
    network this small gains little from a second thread but loses a lot when cores are shared.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _calibrate(seed, n_train, n_test, epochs, batch_size, lr)
    finally:
        torch.set_num_threads(previous_threads)


def _calibrate(seed: int, n_train: int, n_test: int, epochs: int, batch_size: int, lr: float) -> Calibration:
    start = time.perf_counter()
    torch.manual_seed(seed)
    train = build_dataset("synthetic-difficulty", split="train", seed=seed, size=n_train, augment=True)
    test = build_dataset("synthetic-difficulty", split="test", seed=seed, size=n_test, return_difficulty=True)
    model = _small_cnn(train.info.num_classes)
    steps = epochs * ((n_train + batch_size - 1) // batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    criterion = nn.CrossEntropyLoss()

    wrong_train = 0
    for epoch in range(epochs):
        model.train()
        for images, labels in build_loader(train, batch_size, shuffle=True, seed=seed + epoch):
            logits = model(images)  # (B, classes)
            loss = criterion(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if epoch == epochs - 1:
                wrong_train += int((logits.argmax(1) != labels).sum())

    model.eval()
    wrong = torch.zeros(LEVELS)
    count = torch.zeros(LEVELS)
    with torch.inference_mode():
        for images, labels, levels in build_loader(test, 256, shuffle=False, seed=seed):
            miss = (model(images).argmax(1) != labels).float()  # (B,)
            wrong.index_add_(0, levels, miss)
            count.index_add_(0, levels, torch.ones_like(miss))
    return Calibration(
        error_by_level=tuple((wrong / count.clamp(min=1)).tolist()),
        count_by_level=tuple(int(c) for c in count.tolist()),
        train_error=wrong_train / n_train,
        seed=seed,
        n_train=n_train,
        epochs=epochs,
        seconds=time.perf_counter() - start,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    result = calibrate_synthetic(seed=args.seed, n_train=args.n_train, epochs=args.epochs, threads=args.threads)
    print(result.table())
    print(
        f"train error (last epoch) {result.train_error:.1%}; monotonic: {result.is_monotonic()}; {result.seconds:.0f} s"
    )


if __name__ == "__main__":
    main()
