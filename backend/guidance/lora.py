"""The camera-conditioned LoRA score model of VSD (ProlificDreamer): eps_phi(x_t, t, c).

VSD needs the score of the distribution of the *current renders*. ProlificDreamer estimates it
with a LoRA of the pretrained U-Net, conditioned on the camera c (flattened 4x4
camera-to-world) through a small MLP used as a class embedding. Here:

- LoRA: rank-r adapters on the attention projections (to_q, to_k, to_v, to_out.0) of the
  prior's *own* U-Net, through diffusers' peft integration (`unet.add_adapter`). No second
  copy of the U-Net (Stable Diffusion's would cost 3.4 GB). lora_alpha = r, so the LoRA scale is
  1 as in threestudio's LoRAAttnProcessor.
- Camera: `CameraEmbedding`, an MLP of the flattened c2w whose output is added to the U-Net's
  time embedding. That is what a diffusers class embedding does (`emb = emb + class_emb` in
  UNet2DConditionModel), but applied by a forward hook on `unet.time_embedding` rather than by
  assigning `unet.class_embedding` and passing `class_labels`: with the hook, the prior's own
  `model_output` / `predict_noise` (and their epsilon / v / x_0 handling) serve the LoRA model
  unchanged, and U-Nets that already use class labels keep working.
- A prior that is itself camera-conditioned (`backend.guidance.camera_condition`) is given the
  same cameras in the LoRA branch as in the pretrained one, so the two differ only by what the
  LoRA learned (a dropped camera, c2w = 0, is c = 0 for both).
- Text: the LoRA model is fed one fixed text embedding, the job's prompt without a view
  suffix, as threestudio does (`guidance_scale_lora` 1: the prompt-conditioned LoRA prediction
  alone). It starts as the pretrained model *for that prompt*, so at the start eps_phi is the
  prior's conditional prediction and the particle gradient is (s - 1) (eps_c - eps_u) rather
  than the empty prompt's s (eps_c - eps_u); on the built-in model either learns the renders
  at about the same rate (docs/research/vsd-on-the-built-in-model.md). The empty prompt
  remains the default for callers without one prompt (a composed scene).

Sharing the prior: the prior is cached per process and shared by jobs. Outside `active(...)`
the adapter is disabled and the hook absent, so the U-Net computes exactly the pretrained
prediction (the guided eps the particles follow); `close()` removes the adapter's layers
(`unload_lora`), leaving the U-Net as it was before the job. Should a caller never close it,
the layers go when the `CameraLoRA` is garbage collected.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers.models.embeddings import TimestepEmbedding
from peft import LoraConfig

from backend.guidance.camera_condition import camera_condition
from backend.guidance.prior import DiffusionPrior

ADAPTER_NAME = "boxdream_vsd"
"""Name of the VSD adapter inside the U-Net."""
TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
"""Attention projections that get LoRA adapters (threestudio's attention-processor LoRA)."""


class CameraEmbedding(torch.nn.Module):
    """Flattened camera-to-world [B, 4, 4] -> [B, D] time-embedding offset.

    Linear(16, D) - SiLU - Linear(D, D) (diffusers' TimestepEmbedding, the module threestudio
    uses as VSD's camera class embedding). The last layer starts at zero, so the LoRA model
    starts as exactly the pretrained model.
    """

    def __init__(self, time_embed_dim: int) -> None:
        super().__init__()
        self.mlp = TimestepEmbedding(16, time_embed_dim)
        torch.nn.init.zeros_(self.mlp.linear_2.weight)
        torch.nn.init.zeros_(self.mlp.linear_2.bias)

    def forward(self, c2w: torch.Tensor) -> torch.Tensor:
        return self.mlp(c2w.flatten(1).float())


class CameraLoRA:
    """eps_phi(x_t, t, c): a LoRA of the prior's U-Net plus a camera embedding (module
    docstring). Use as a context manager, or call `close()`, so the adapter leaves the shared
    prior when the job ends."""

    def __init__(self, prior: DiffusionPrior, rank: int = 4, prompt: str = "") -> None:
        unet = prior.unet
        if getattr(unet, "_hf_peft_config_loaded", False):
            raise ValueError(
                "method: vsd needs the prior's U-Net without adapters, but it already carries "
                f"{list(unet.peft_config)}"
            )
        self.prior = prior
        unet.add_adapter(
            LoraConfig(r=rank, lora_alpha=rank, target_modules=list(TARGET_MODULES)),
            adapter_name=ADAPTER_NAME,
        )
        self._adapter_parameters = [p for p in unet.parameters() if p.requires_grad]
        for p in self._adapter_parameters:
            # fp32 master weights under a reduced-precision prior: peft runs an adapter in its
            # own weights' dtype and casts the sum back to the base layer's
            p.data = p.data.float()
        unet.disable_adapters()
        self._keep_trainable()
        self.camera_embedding = CameraEmbedding(unet.time_embedding.linear_2.out_features)
        self.camera_embedding.to(prior.device)
        self.trainable_parameters: list[torch.nn.Parameter] = [
            *self._adapter_parameters,
            *self.camera_embedding.parameters(),
        ]
        """What the LoRA optimiser trains: the adapter matrices and the camera MLP."""
        self.text = prior.encode_text([prompt])
        """[1, L, D] the LoRA model's text input: `prompt`'s embedding (module docstring)."""
        self._release = weakref.finalize(self, unet.unload_lora)
        """Removes the adapter's layers: run by `close()`, or when this object is garbage
        collected (a safety net for a caller that never closes it), whichever comes first."""

    @property
    def closed(self) -> bool:
        """True once the adapter has left the U-Net."""
        return not self._release.alive

    @contextmanager
    def active(self, c2w: torch.Tensor) -> Iterator[None]:
        """Inside the block the U-Net is the LoRA model for cameras c2w [B, 4, 4] (forwards
        must have batch B); outside it is the pretrained model."""
        if self.closed:
            raise RuntimeError("vsd: the LoRA was closed")
        unet = self.prior.unet
        offset = self.camera_embedding(c2w.to(self.prior.device))  # [B, D]

        def add_camera(_module, _inputs, emb: torch.Tensor) -> torch.Tensor:
            return emb + offset.to(emb.dtype)

        hook = unet.time_embedding.register_forward_hook(add_camera)
        unet.enable_adapters()
        try:
            yield
        finally:
            unet.disable_adapters()
            self._keep_trainable()
            hook.remove()

    def _keep_trainable(self) -> None:
        """peft's `disable_adapters` also freezes the adapter weights, and autograd skips
        frozen leaves, so a LoRA loss built inside `active` and backpropagated after it would
        train nothing. Disabled layers do not read these weights, so the pretrained path is
        unaffected by them staying trainable."""
        for p in self._adapter_parameters:
            p.requires_grad_(True)

    def model_output(self, x_t: torch.Tensor, t: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
        """The LoRA model's raw prediction (eps, v or x_0, as the prior's) for [B, C, h, w]
        x_t, [B] t, [B, 4, 4] c2w; differentiable in `trainable_parameters`."""
        with self.active(c2w):
            return self.prior.model_output(x_t, t, self._text(x_t), camera_condition(c2w))

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, c2w: torch.Tensor) -> torch.Tensor:
        """eps_phi(x_t, t, c) [B, C, h, w] (converted from v / x_0 like the prior's)."""
        with self.active(c2w):
            return self.prior.predict_noise(x_t, t, self._text(x_t), camera_condition(c2w))

    def _text(self, x_t: torch.Tensor) -> torch.Tensor:
        return self.text.expand(x_t.shape[0], -1, -1)

    def close(self) -> None:
        """Remove the adapter's layers from the U-Net (idempotent)."""
        self._release()

    def __enter__(self) -> CameraLoRA:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
