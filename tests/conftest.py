"""Shared test setup: one torch thread per test process (2-core machines, parallel workers),
and tiny diffusion priors built from config (nothing downloaded)."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_checkpoints import save_tiny_deepfloyd_if, save_tiny_stable_diffusion
from tests.tiny_priors import tiny_latent_prior, tiny_pixel_prior

torch.set_num_threads(1)


@pytest.fixture
def two_threads():
    """Two torch threads for one test (the CPU kernels' thread splits), one again after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def pixel_prior():
    """A random 16x16 pixel-space prior (UNet2DConditionModel + CLIP text encoder)."""
    return tiny_pixel_prior()


@pytest.fixture(scope="session")
def latent_prior():
    """A random Stable-Diffusion-shaped prior: U-Net, AutoencoderKL and CLIP text encoder."""
    return tiny_latent_prior()


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """Tiny checkpoint folders in the published layouts, written once: "sd" (Stable Diffusion)
    and "if" (DeepFloyd-IF-style)."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "sd": str(save_tiny_stable_diffusion(root / "sd")),
        "if": str(save_tiny_deepfloyd_if(root / "if")),
    }
