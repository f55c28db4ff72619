"""Search space as data (§4.1, Figure 3): stage tables, cell shapes, module specs, size."""

import dataclasses

import pytest

from instanas_core.search_space import (
    MODULE_NAMES,
    ModuleSpec,
    make_search_space,
    parse_module_name,
    space_size,
    stage_table,
)


@pytest.mark.parametrize("resolution,final", [(32, 4), (64, 4), (224, 7)])
def test_cells_and_final_map(resolution, final):
    space = make_search_space(resolution)
    cells = space.cells()
    assert space.num_cells == len(cells) == 17
    assert space.num_modules == 5
    assert cells[-1].out_size == final
    assert cells[-1].out_channels == 320
    # the first cell of each of the 7 stages changes channels: the at-least-one rule applies there
    assert [c.index for c in cells if c.requires_module] == [0, 1, 3, 6, 10, 13, 16]


def test_cifar_strides_and_stem():
    s32, s224 = make_search_space(32), make_search_space(224)
    assert s32.stem_stride == 1 and s224.stem_stride == 2
    assert stage_table(32)[1].stride == 1 and stage_table(64)[1].stride == 2
    assert s32.cells()[0].in_size == 32 and s224.cells()[0].in_size == 112


def test_width_multiplier_rounds_to_eight():
    space = make_search_space(32, width_mult=0.5)
    assert space.stem_out_channels == 16
    assert [c.out_channels for c in space.cells()][:3] == [8, 16, 16]
    assert space.head_out_channels == 1280  # MobileNetV2 keeps 1280 below width 1


def test_preset_may_change_a_stride():
    table = list(stage_table(32))
    table[1] = dataclasses.replace(table[1], stride=2)
    space = make_search_space(32, stages=tuple(table))
    assert space.final_size == 2
    assert space.space_hash() != make_search_space(32).space_hash()


def test_module_names_parse_round_trip():
    for name in MODULE_NAMES:
        assert parse_module_name(name).name == name
    assert parse_module_name("ir_k5_e3") == ModuleSpec("ir", 5, 3)
    with pytest.raises(ValueError, match="Unknown module name"):
        parse_module_name("ir_k7")


def test_space_size_matches_paper():
    size = space_size(make_search_space(32))
    assert size["naive"] == 32**17
    assert 25 < size["naive_log10"] < 26  # the paper's "about 10^25"
    assert size["exact"] == 31**7 * 32**10


def test_serialisation_round_trip():
    space = make_search_space(64, width_mult=0.75, num_classes=200)
    again = type(space).from_dict(space.to_dict())
    assert again == space and again.space_hash() == space.space_hash()


@pytest.mark.parametrize(
    "bad", [dict(resolution=48), dict(resolution=32, width_mult=0), dict(resolution=32, num_classes=0)]
)
def test_bad_space_refused(bad):
    with pytest.raises(ValueError):
        make_search_space(**bad)
