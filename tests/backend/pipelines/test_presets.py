"""Presets: CPU runs decay their rate and smooth the grid; edits keep the artist's surface."""

from __future__ import annotations

import pytest

from backend.pipelines.presets import (
    EDIT_LR,
    EDIT_TOTAL_VARIATION,
    edit_config,
    preset_config,
)


@pytest.mark.parametrize("preset", ["preview", "standard", "high"])
def test_cpu_presets_decay_the_rate_and_smooth_the_grid(preset):
    config = preset_config(preset, "sds", on_gpu=False)
    assert config.lr_end is not None and config.lr_end < config.lr
    assert config.regularisers.total_variation >= 10.0


@pytest.mark.parametrize("on_gpu", [False, True])
def test_edits_keep_a_low_constant_rate_and_light_smoothing(on_gpu):
    preset = preset_config("preview", "sds", on_gpu=on_gpu)
    config = edit_config(preset)
    assert config.lr == min(preset.lr, EDIT_LR) and config.lr_end is None
    assert config.regularisers.total_variation == min(
        preset.regularisers.total_variation, EDIT_TOTAL_VARIATION
    )
    assert config.steps == preset.steps and config.guidance_scale == preset.guidance_scale


def test_unknown_names_are_named():
    with pytest.raises(ValueError, match="preset"):
        preset_config("ultra", "sds", on_gpu=False)
    with pytest.raises(ValueError, match="method"):
        preset_config("preview", "dreamtime", on_gpu=False)
