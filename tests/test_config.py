"""Stage configurations: presets build, overrides are typed, bad values are refused."""

import dataclasses

import pytest

from instanas_core.config import (
    PRESETS,
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    get_preset,
    stage_profile_config,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_round_trip(name):
    cfg = get_preset(name)
    assert isinstance(cfg, Config) and cfg.preset == name
    assert config_from_dict(config_to_dict(cfg)) == cfg
    space = cfg.experiment.space()
    assert space.num_cells == 17 and space.num_modules == 5
    pc = stage_profile_config(cfg)
    assert pc.resolution == space.resolution and pc.width_mult == cfg.experiment.width_mult


def test_paper_presets_follow_the_paper():
    c10 = get_preset("cifar10")
    assert c10.experiment.dataset == "cifar10" and c10.experiment.width_mult == 1.0
    assert c10.pretrain.lr == 0.1 and c10.pretrain.batch_size == 32
    s = c10.search
    assert (s.controller_lr, s.batch_size, s.alpha, s.entropy_bonus, s.epochs) == (5e-4, 32, 0.8, 0.8, 500)
    assert (s.reward_correct, s.reward_wrong) == (30.0, 0.0)
    f = c10.finetune
    assert f.mode == "retrain" and f.resolved_optimizer == "adam" and f.resolved_lr == 0.01 and f.schedule == "cosine"
    assert get_preset("imagenet").experiment.space().resolution == 224
    assert get_preset("tinyimagenet").experiment.space().resolution == 64


def test_cifar10_cpu_runs_at_reduced_scale():
    cfg = get_preset("cifar10-cpu")
    assert cfg.experiment.dataset == "cifar10-jpeg"
    assert cfg.experiment.width_mult < 1 and cfg.experiment.stage24_stride == 2
    assert cfg.experiment.space().stages[1].stride == 2


def test_overrides_are_typed():
    cfg = apply_overrides(
        get_preset("smoke"),
        [
            "epochs=7",
            "search.alpha=0.9",
            "train_meta_graph=false",
            "seed=3",
            "upper_end_ms=1.5",
            "max_steps_per_epoch=none",
        ],
        section="search",
    )
    assert cfg.search.epochs == 7 and isinstance(cfg.search.epochs, int)
    assert cfg.search.alpha == 0.9
    assert cfg.search.train_meta_graph is False
    assert cfg.experiment.seed == 3
    assert cfg.search.upper_end_ms == 1.5
    assert cfg.search.max_steps_per_epoch is None
    # Unqualified keys go to the stage given, qualified ones anywhere.
    cfg2 = apply_overrides(get_preset("smoke"), ["epochs=4", "finetune.mode=retrain"], section="pretrain")
    assert cfg2.pretrain.epochs == 4 and cfg2.search.epochs == get_preset("smoke").search.epochs
    assert cfg2.finetune.mode == "retrain" and cfg2.finetune.resolved_optimizer == "adam"


@pytest.mark.parametrize(
    "override, message",
    [
        ("epochs=three", "integer"),
        ("alpha=1.5", "alpha"),
        ("nonsense=1", "Valid keys"),
        ("search.nonsense=1", "Valid keys"),
        ("nope.epochs=1", "unknown section"),
        ("epochs", "key=value"),
        ("train_meta_graph=maybe", "true or false"),
        ("batch_size=0", "positive"),
        ("controller_lr=-1", "positive"),
        ("reward_wrong=5", "reward_wrong"),
        ("experiment.dataset=mnist", "unknown dataset"),
        ("experiment.width_mult=0", "positive"),
        ("upper_start_ms=1.0", "upper_start_ms"),
    ],
)
def test_bad_overrides_are_refused(override, message):
    overrides = [override]
    if override.startswith("upper_start_ms"):
        overrides = ["upper_end_ms=2.0", override]  # U must shrink
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("smoke"), overrides, section="search")


def test_error_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        apply_overrides(get_preset("smoke"), ["lr_typo=1"], section="pretrain")
    text = str(info.value)
    assert "pretrain (may be given unqualified)" in text and "drop_max" in text and "width_mult" in text


def test_finetune_variant_and_mode_validation():
    base = get_preset("smoke")
    assert apply_overrides(base, ["variant=epoch:3"], section="finetune").finetune.variant == "epoch:3"
    for bad in ("variant=F", "mode=distill", "out_dir=search", "optimizer=rmsprop"):
        with pytest.raises(ConfigError):
            apply_overrides(base, [bad], section="finetune")


def test_configs_are_frozen():
    cfg = get_preset("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.search.epochs = 3  # type: ignore[misc]


def test_data_size_only_for_synthetic():
    with pytest.raises(ConfigError, match="synthetic"):
        apply_overrides(get_preset("smoke"), ["data_size=10"], section="pretrain")
    cfg = apply_overrides(get_preset("smoke"), ["dataset=synthetic-difficulty", "data_size=10"], section="pretrain")
    assert cfg.experiment.data_size == 10
