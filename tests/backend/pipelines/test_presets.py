"""Presets: CPU runs decay their rate, smooth the grid and frame views as the built-in model was
trained; edits keep the artist's surface."""

from __future__ import annotations

import pytest

from backend.builtin_model.dataset import DatasetConfig
from backend.pipelines.presets import (
    CPU_GUIDANCE_INTERVAL,
    CPU_INTERVAL_REGULARISERS,
    EDIT_LR,
    EDIT_TOTAL_VARIATION,
    RegulariserConfig,
    edit_config,
    preset_config,
)


@pytest.mark.parametrize("preset", ["preview", "standard", "high"])
def test_cpu_presets_decay_the_rate_and_smooth_the_grid(preset):
    config = preset_config(preset, "sds", on_gpu=False)
    assert config.lr_end is not None and config.lr_end < config.lr
    assert config.regularisers.total_variation >= 10.0


@pytest.mark.parametrize("preset", ["preview", "standard", "high"])
@pytest.mark.parametrize("method", ["sds", "vsd", "sjc"])
def test_cpu_presets_frame_views_as_the_builtin_model_was_trained(preset, method):
    assert preset_config(preset, method, on_gpu=False).cameras == DatasetConfig().cameras


def test_gpu_presets_keep_random_framing_for_stable_diffusion():
    cameras = preset_config("preview", "sds", on_gpu=True).cameras
    assert cameras.distance_range[0] < cameras.distance_range[1]
    assert cameras.fovy_range_deg[0] < cameras.fovy_range_deg[1]


@pytest.mark.parametrize("on_gpu", [False, True])
def test_edits_keep_a_low_constant_rate_and_light_smoothing(on_gpu):
    preset = preset_config("preview", "sds", on_gpu=on_gpu)
    config = edit_config(preset)
    assert config.lr == min(preset.lr, EDIT_LR) and config.lr_end is None
    assert config.regularisers.total_variation == min(
        preset.regularisers.total_variation, EDIT_TOTAL_VARIATION
    )
    assert config.steps == preset.steps and config.guidance_scale == preset.guidance_scale


def test_edge_smoothing_eps_must_be_positive():
    with pytest.raises(ValueError, match="edge_total_variation_eps"):
        RegulariserConfig(edge_total_variation_eps=0.0)


def test_unknown_names_are_named():
    with pytest.raises(ValueError, match="preset"):
        preset_config("ultra", "sds", on_gpu=False)
    with pytest.raises(ValueError, match="method"):
        preset_config("preview", "dreamtime", on_gpu=False)


def test_only_cpu_sds_guides_by_noise_level():
    sds = preset_config("preview", "sds", on_gpu=False)
    assert sds.guidance_interval == CPU_GUIDANCE_INTERVAL
    assert sds.regularisers == CPU_INTERVAL_REGULARISERS
    for method, on_gpu in [("vsd", False), ("sjc", False), ("sds", True)]:
        assert preset_config("preview", method, on_gpu).guidance_interval is None, method
    edit = edit_config(sds)
    assert edit.guidance_interval is None and edit.views == 4
    assert edit.regularisers.edge_total_variation == 0.0
    assert edit_config(preset_config("preview", "sds", on_gpu=True)).views == 1
