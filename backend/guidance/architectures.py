"""Full-size published architectures with random weights, for benchmarks at true scale without
downloading a checkpoint (`boxdream bench --architecture sd-2.1`).

Stable Diffusion 2.1-base, from its published configs (stabilityai/stable-diffusion-2-1-base:
unet/config.json, vae/config.json, text_encoder/config.json): a U-Net of about 865M parameters
on 4x64x64 latents, the OpenCLIP ViT-H/14 text tower (1024 wide, 23 layers) and the
AutoencoderKL of every SD release. Time and memory do not depend on the weights' values; the
tokenizer is the built-in model's (its ids are valid for the 49,408-entry embedding) padded to
SD's 77 tokens, so the cross-attention sees SD's sequence length.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from backend.builtin_model.architecture import build_tokenizer
from backend.guidance.prior import DiffusionPrior

SD_TEXT_TOKENS = 77
"""Prompt length of every Stable Diffusion text encoder."""


def stable_diffusion_2_1_base(device: torch.device, dtype: torch.dtype) -> DiffusionPrior:
    """SD 2.1-base's U-Net, VAE and text encoder, randomly initialised, on `device` in `dtype`."""
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=(
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=(
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ),
        attention_head_dim=(5, 10, 20, 20),
        cross_attention_dim=1024,
        use_linear_projection=True,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        sample_size=512,
        scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=23,
            num_attention_heads=16,
            max_position_embeddings=SD_TEXT_TOKENS,
            hidden_act="gelu",
            projection_dim=512,
        )
    )
    tokenizer = build_tokenizer()
    tokenizer.model_max_length = SD_TEXT_TOKENS
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
    return DiffusionPrior.from_components(
        unet, scheduler, text_encoder, tokenizer, vae, device=device, dtype=dtype
    )


BUILDERS: dict[str, Callable[[torch.device, torch.dtype], DiffusionPrior]] = {
    "sd-2.1": stable_diffusion_2_1_base,
}
"""A builder per name of `backend.pipelines.catalogue.ARCHITECTURES`."""
