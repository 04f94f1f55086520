"""Shared test setup: one torch thread per test process (2-core machines, parallel workers),
and tiny diffusion priors built from config (nothing downloaded)."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_priors import tiny_latent_prior, tiny_pixel_prior

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def pixel_prior():
    """A random 16x16 pixel-space prior (UNet2DConditionModel + CLIP text encoder)."""
    return tiny_pixel_prior()


@pytest.fixture(scope="session")
def latent_prior():
    """A random Stable-Diffusion-shaped prior: U-Net, AutoencoderKL and CLIP text encoder."""
    return tiny_latent_prior()
