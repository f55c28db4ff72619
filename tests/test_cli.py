"""The command line's option plumbing: every stage option reaches the stage's configuration."""

import pytest

from instanas_core.cli import build_parser, resolve_stage_config
from instanas_core.config import ConfigError


def test_stage_options_reach_the_config(tmp_path):
    args = build_parser().parse_args(
        [
            "pretrain",
            "--preset",
            "smoke",
            "--dataset",
            "cifar10",
            "--device",
            "cpu",
            "--download",
            "--run-dir",
            str(tmp_path),
            "--set",
            "epochs=3",
            "seed=7",
        ]
    )
    cfg = resolve_stage_config("pretrain", args)
    assert cfg.experiment.dataset == "cifar10" and cfg.experiment.download is True
    assert cfg.pretrain.epochs == 3 and cfg.experiment.seed == 7


def test_download_is_off_unless_asked(tmp_path):
    args = build_parser().parse_args(["search", "--preset", "smoke", "--run-dir", str(tmp_path)])
    assert resolve_stage_config("search", args).experiment.download is False


def test_unknown_override_refused(tmp_path):
    args = build_parser().parse_args(["pretrain", "--preset", "smoke", "--run-dir", str(tmp_path), "--set", "epoks=3"])
    with pytest.raises(ConfigError, match="epoks"):
        resolve_stage_config("pretrain", args)
