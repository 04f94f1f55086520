"""The 2D diffusion prior behind every distillation method: a diffusers text-to-image model.

One class serves latent models (Stable Diffusion 1.x/2.x: the render is VAE-encoded) and
pixel-space models (DeepFloyd-IF-style and the built-in `tiny-shapes`), loaded from a local
folder or a hub id in the diffusers layout (model_index.json + component folders).

Notation (DDPM): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps. Whatever the model
predicts (epsilon, v or x_0), `predict_noise` returns eps_hat.

Classifier-free guidance, the one formula used everywhere in BoxDream:

    eps_cfg = eps(x_t, empty) + s * (eps(x_t, y) - eps(x_t, empty))

so s = 1 is the plain conditional model. (threestudio's SDS writes cond + s * (cond - uncond),
which is this formula with s + 1; our `guidance_scale` values follow the formula above.)
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from backend.guidance.camera_condition import CAMERA_CONDITION_DIM, accepts_camera

BUILTIN_MODEL_NAME = "tiny-shapes"
"""Name of the model that ships inside the package."""


def builtin_model_path() -> Path:
    """Folder of the built-in model inside the installed package."""
    return Path(__file__).resolve().parent.parent / "builtin_model" / BUILTIN_MODEL_NAME


def resolve_model(name_or_path: str | None) -> str:
    """None or "tiny-shapes" -> the package folder; anything else is a folder or a hub id."""
    if name_or_path in (None, BUILTIN_MODEL_NAME):
        return str(builtin_model_path())
    return name_or_path


def _component_class(library: str, class_name: str) -> type:
    return getattr(importlib.import_module(library), class_name)


def _read_model_index(source: str) -> dict:
    local = Path(source) / "model_index.json"
    if local.is_file():
        return json.loads(local.read_text())
    from huggingface_hub import hf_hub_download  # only for hub ids on machines that reach it

    return json.loads(Path(hf_hub_download(source, "model_index.json")).read_text())


@dataclass
class DiffusionPrior:
    """A loaded text-to-image diffusion model, ready for score distillation.

    Attributes:
        unet: noise predictor eps_phi(x_t, t, y) (or v / x_0 predictor).
        scheduler: holds alphas_cumprod and the prediction type.
        text_encoder, tokenizer: prompt -> [B, L, D] embeddings.
        vae: AutoencoderKL for latent models, None for pixel-space models.
        device, dtype: where and in which precision the networks run.
    """

    unet: torch.nn.Module
    scheduler: object
    text_encoder: torch.nn.Module
    tokenizer: object
    vae: torch.nn.Module | None
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def load(
        cls,
        name_or_path: str | None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> DiffusionPrior:
        """Load every component listed in model_index.json (local folder or hub id)."""
        source = resolve_model(name_or_path)
        device = torch.device(device)
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        try:
            index = _read_model_index(source)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(
                f"model: cannot read model_index.json of {source!r} ({exc}); give a folder in the "
                "diffusers layout or a hub id reachable from this machine"
            ) from exc
        parts = {}
        for name in ("unet", "scheduler", "text_encoder", "tokenizer", "vae"):
            if name not in index or index[name][0] is None:
                continue
            library, class_name = index[name]
            if name == "tokenizer":
                library, class_name = "transformers", "AutoTokenizer"
            loader = _component_class(library, class_name)
            parts[name] = loader.from_pretrained(source, subfolder=name)
        missing = {"unet", "scheduler", "text_encoder", "tokenizer"} - parts.keys()
        if missing:
            raise ValueError(f"model: {source!r} lacks components {sorted(missing)}")
        return cls.from_components(
            parts["unet"],
            parts["scheduler"],
            parts["text_encoder"],
            parts["tokenizer"],
            parts.get("vae"),
            device=device,
            dtype=dtype,
        )

    @classmethod
    def from_components(
        cls,
        unet,
        scheduler,
        text_encoder,
        tokenizer,
        vae=None,
        *,
        device="cpu",
        dtype=torch.float32,
    ) -> DiffusionPrior:
        """Wrap already-built components (tests build tiny ones from config)."""
        config = getattr(unet, "config", None)
        if getattr(config, "class_embed_type", None) == "projection" and not accepts_camera(unet):
            width = getattr(config, "projection_class_embeddings_input_dim", None)
            raise ValueError(
                f"model: its U-Net takes a class label of {width} numbers, not the "
                f"{CAMERA_CONDITION_DIM}-number camera condition of this BoxDream "
                "(backend/guidance/camera_condition.py); retrain it, or use the shipped tiny-shapes"
            )
        device = torch.device(device)
        modules = [m for m in (unet, text_encoder, vae) if m is not None]
        for module in modules:
            if next(module.parameters()).dtype != dtype:
                module.to(dtype=dtype)
            module.to(device=device).eval().requires_grad_(False)
        return cls(unet, scheduler, text_encoder, tokenizer, vae, device, dtype)

    # ---- geometry of the model's input -------------------------------------------------------
    @property
    def latent(self) -> bool:
        """True when the U-Net works on VAE latents."""
        return self.vae is not None

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1

    @property
    def resolution(self) -> int:
        """Side of the RGB image the model judges (512 for SD 1.5, 32 for tiny-shapes)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """[T] alpha_bar_t on the model's device (float32)."""
        return self.scheduler.alphas_cumprod.to(self.device, torch.float32)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    # ---- text --------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> [B, L, D] text embeddings (the U-Net's cross-attention input)."""
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        out = self.text_encoder(tokens.input_ids.to(self.device))
        return out[0].to(self.dtype)

    def unknown_token_fraction(self, prompt: str) -> float:
        """Share of the prompt's tokens the tokenizer maps to its unknown token."""
        unk = getattr(self.tokenizer, "unk_token_id", None)
        ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
        return 0.0 if not ids or unk is None else sum(i == unk for i in ids) / len(ids)

    # ---- images <-> model space --------------------------------------------------------------
    def encode_images(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] renders in [0, 1] -> x_0 in model space (differentiable).

        Pixel models: resized to the native resolution and mapped to [-1, 1].
        Latent models: resized to the VAE's resolution, encoded, times the latent scaling.
        """
        size = self.resolution
        if rgb.shape[-1] != size or rgb.shape[-2] != size:
            rgb = F.interpolate(rgb, (size, size), mode="bilinear", align_corners=False)
        x = (rgb * 2.0 - 1.0).to(self.dtype)
        if self.vae is None:
            return x
        posterior = self.vae.encode(x).latent_dist
        return posterior.sample() * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Model-space x_0 -> [B, 3, H, W] RGB in [0, 1] (for previews)."""
        if self.vae is not None:
            x0 = self.vae.decode(x0 / self.vae.config.scaling_factor).sample
        return ((x0.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    # ---- noise prediction ----------------------------------------------------------------------
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t: [B] integer timesteps."""
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(x0.dtype)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    @property
    def camera_conditioned(self) -> bool:
        """True when the U-Net takes the camera condition c (`camera_condition`)."""
        return accepts_camera(self.unet)

    def model_output(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        camera: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The U-Net's own prediction (eps, v or x_0 per `prediction_type`) for [B, C, h, w]
        x_t, [B] t, [B, L, D] text and [B, CAMERA_CONDITION_DIM] camera conditions c (None:
        unknown, c = 0; a U-Net without camera conditioning ignores them); a learned-variance
        half is dropped."""
        extra = {}
        if self.camera_conditioned:
            if camera is None:
                camera = torch.zeros(x_t.shape[0], CAMERA_CONDITION_DIM)
            extra["class_labels"] = camera.to(self.device, self.dtype)
        out = self.unet(
            x_t.to(self.dtype), t.to(self.device), encoder_hidden_states=text, **extra
        ).sample
        if out.shape[1] == 2 * x_t.shape[1]:  # learned variance (DeepFloyd IF): keep the mean
            out = out[:, : x_t.shape[1]]
        return out

    def training_target(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """What `model_output` is trained to match at x_t = add_noise(x0, noise, t):
        eps, v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0, or x_0."""
        prediction = self.scheduler.config.prediction_type
        if prediction == "epsilon":
            return noise
        if prediction == "v_prediction":
            a = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(x0.dtype)
            return a.sqrt() * noise - (1 - a).sqrt() * x0
        if prediction == "sample":
            return x0
        raise ValueError(f"model: unsupported prediction_type {prediction!r}")

    def predict_noise(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        camera: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """eps_hat(x_t, t, y, c) for [B, C, h, w] x_t, [B] t, [B, L, D] text and
        [B, CAMERA_CONDITION_DIM] camera conditions or None (unknown)."""
        out = self.model_output(x_t, t, text, camera)
        prediction = self.scheduler.config.prediction_type
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(out.dtype)
        if prediction == "epsilon":
            return out
        if prediction == "v_prediction":
            # v = sqrt(a) eps - sqrt(1-a) x_0  =>  eps = sqrt(a) v + sqrt(1-a) x_t
            return a.sqrt() * out + (1 - a).sqrt() * x_t.to(out.dtype)
        if prediction == "sample":
            return (x_t.to(out.dtype) - a.sqrt() * out) / (1 - a).sqrt()
        raise ValueError(f"model: unsupported prediction_type {prediction!r}")

    def guided_noise(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        uncond: torch.Tensor,
        guidance_scale: float | torch.Tensor,
        camera: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Classifier-free guided eps (formula in the module docstring), one batched forward.

        x_t: [B, C, h, w]; t: [B]; cond, uncond: [B, L, D]; guidance_scale: s, or one per
        sample [B, 1, 1, 1] (`backend.guidance.guidance_interval`); camera:
        [B, CAMERA_CONDITION_DIM] conditions c or None. Both branches see the camera: guidance
        moves along the text only.
        """
        eps = self.predict_noise(
            torch.cat([x_t, x_t]),
            torch.cat([t, t]),
            torch.cat([uncond, cond]),
            None if camera is None else torch.cat([camera, camera]),
        )
        eps_uncond, eps_cond = eps.chunk(2)
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)
