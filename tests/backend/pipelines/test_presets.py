"""Presets: the model's family picks the table on any device; built-in runs decay their rate,
smooth the grid and frame views as the built-in model was trained; edits keep the artist's
surface."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backend.builtin_model.dataset import DatasetConfig
from backend.guidance.prior import ModelFamily
from backend.pipelines.catalogue import PRESETS
from backend.pipelines.presets import (
    CPU_GUIDANCE_INTERVAL,
    CPU_INTERVAL_REGULARISERS,
    EDIT_LR,
    EDIT_TOTAL_VARIATION,
    IF_GUIDANCE_SCALE,
    PARTICLE_SPARSITY,
    RegulariserConfig,
    edit_config,
    preset_config,
)

BUILTIN, LATENT, PIXEL = ModelFamily.BUILTIN, ModelFamily.LATENT, ModelFamily.PIXEL


@pytest.mark.parametrize("preset", ["preview", "standard", "high"])
def test_cpu_presets_decay_the_rate_and_smooth_the_grid(preset):
    config = preset_config(preset, "sds", BUILTIN)
    assert config.lr_end is not None and config.lr_end < config.lr
    assert config.regularisers.total_variation >= 10.0


@pytest.mark.parametrize("preset", ["preview", "standard", "high"])
@pytest.mark.parametrize("method", ["sds", "vsd", "sjc"])
def test_cpu_presets_frame_views_as_the_builtin_model_was_trained(preset, method):
    assert preset_config(preset, method, BUILTIN).cameras == DatasetConfig().cameras


def test_stable_diffusion_presets_keep_random_framing():
    cameras = preset_config("preview", "sds", LATENT).cameras
    assert cameras.distance_range[0] < cameras.distance_range[1]
    assert cameras.fovy_range_deg[0] < cameras.fovy_range_deg[1]


@pytest.mark.parametrize("family", list(ModelFamily))
def test_edits_keep_a_low_constant_rate_and_light_smoothing(family):
    preset = preset_config("preview", "sds", family)
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
        preset_config("ultra", "sds", BUILTIN)
    with pytest.raises(ValueError, match="method"):
        preset_config("preview", "dreamtime", BUILTIN)


def test_only_the_builtin_model_guides_by_noise_level():
    sds = preset_config("preview", "sds", BUILTIN)
    assert sds.guidance_interval == CPU_GUIDANCE_INTERVAL
    assert sds.regularisers == CPU_INTERVAL_REGULARISERS
    # VSD and SJC take CPU SDS's recipe but its sparsity (PARTICLE_SPARSITY)
    for method in ("vsd", "sjc"):
        config = preset_config("preview", method, BUILTIN)
        assert config.regularisers.sparsity == PARTICLE_SPARSITY > sds.regularisers.sparsity
        assert replace(config, regularisers=sds.regularisers) == sds
    for method, family in [("sds", LATENT), ("vsd", LATENT), ("sjc", LATENT), ("sds", PIXEL)]:
        assert preset_config("preview", method, family).guidance_interval is None, method
    edit = edit_config(sds)
    assert edit.guidance_interval is None and edit.views == 4
    assert edit.regularisers.edge_total_variation == 0.0
    assert edit_config(preset_config("preview", "sds", LATENT)).views == 1


@pytest.mark.parametrize("preset", ["preview", "standard", "high"])
def test_each_family_has_its_own_table(preset):
    builtin, latent, pixel = (preset_config(preset, "sds", f) for f in ModelFamily)
    assert builtin.resolution <= 48 and builtin.cameras == DatasetConfig().cameras
    assert latent.resolution >= 64 and latent.guidance_scale == 100.0
    assert pixel.guidance_scale == IF_GUIDANCE_SCALE and pixel.steps == latent.steps
    assert preset_config(preset, "vsd", LATENT).guidance_scale == 7.5


def test_the_family_follows_the_model_not_the_device(pixel_prior, latent_prior):
    from tests.tiny_priors import tiny_pixel_prior

    assert latent_prior.family is LATENT
    assert pixel_prior.family is PIXEL
    assert tiny_pixel_prior(camera_conditioned=True).family is BUILTIN


@pytest.mark.parametrize("family", list(ModelFamily))
def test_stage_2_follows_the_preset_for_diffusion_methods_and_is_off_for_clip(family):
    for method in ("sds", "vsd", "sjc"):
        assert preset_config("preview", method, family).refine is None
        assert preset_config("standard", method, family).refine is not None
    assert all(preset_config(p, "clip", family).refine is None for p in PRESETS)


@pytest.mark.parametrize("family", list(ModelFamily))
def test_edits_skip_empty_space_and_generation_does_not(family):
    for preset in PRESETS:
        config = preset_config(preset, "sds", family)
        assert not config.render.skip_empty
        assert edit_config(config).render.skip_empty
