"""Dream Fields (Jain et al., CVPR 2022): CLIP guidance, with no diffusion model at all.

Per step, B views of the field are rendered at CLIP's input size over random pattern
backgrounds (`backend.render.pattern_backgrounds`), and

    L_CLIP = -(1/B) sum_b cos(g(I_b), h(y))

with g, h CLIP's image and text encoders and y the prompt; the field also pays Dream Fields'
transmittance loss (`transmittance_loss`), which keeps the scene sparse:

    L_T = -min(tau, mean_pixels T),   T = 1 - opacity,

with the target tau annealed from 0.5 to 0.88 over the first 500 iterations (the paper's values,
`DreamFieldsConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.guidance.clip_model import ClipModel
from backend.guidance.distillation import DistillationStep, GuidedNoise


@dataclass(frozen=True)
class TransmittanceTarget:
    """Dream Fields' target transmittance tau, annealed linearly."""

    start: float = 0.5
    """tau at the first step (Dream Fields: 0.5)."""
    end: float = 0.88
    """tau after the anneal (Dream Fields: 0.88)."""
    anneal_steps: int = 500
    """Steps over which tau goes from `start` to `end` (Dream Fields: 500)."""

    def at(self, step: int) -> float:
        """tau at a step (0-based)."""
        k = min(1.0, step / max(1, self.anneal_steps))
        return self.start + k * (self.end - self.start)


def transmittance_loss(opacity: torch.Tensor, tau: float) -> torch.Tensor:
    """L_T = -min(tau, mean T) over the pixels of every view, T = 1 - opacity [B, 1, H, W]."""
    return -torch.clamp((1.0 - opacity).mean(), max=tau)


def clip_loss(image_embeddings: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
    """L_CLIP = -(1/B) sum_b cos(image_b, text) for unit image [B, D] and text [D]
    embeddings."""
    return -(image_embeddings @ text_embedding).mean()


class DreamFields:
    """CLIP guidance as the loop's method: `step` takes the renders' CLIP embeddings (the
    loop's x0 with a `ClipModel` as its guide) and returns `guidance_scale` * L_CLIP. The loop
    composites the renders over pattern backgrounds and adds the transmittance loss
    (`backend.pipelines.distill_loop`; `DistillConfig.pattern_backgrounds`,
    `RegulariserConfig.transmittance`)."""

    name = "clip"

    def __init__(self, clip: ClipModel, prompt: str, guidance_scale: float) -> None:
        self.text = clip.encode_text([prompt])[0]  # [D]
        self.guidance_scale = guidance_scale
        """Weight of L_CLIP against the loop's regularisers (which are sums over pixels)."""

    def step(
        self,
        x0: torch.Tensor,
        guided_noise: GuidedNoise | None,
        c2w: torch.Tensor,
        progress: float,
        generator: torch.Generator,
    ) -> DistillationStep:
        """x0: [B, D] unit image embeddings of the renders (with grad); the other arguments
        are the loop's and unused (CLIP needs no noise, timestep or camera)."""
        loss = self.guidance_scale * clip_loss(x0, self.text.to(x0.device))
        return DistillationStep(
            loss=loss,
            grad_norm=float("nan"),  # no injected gradient: the loss is backpropagated as it is
            timesteps=torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device),
        )
