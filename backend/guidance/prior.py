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

import enum
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import diffusers
import torch
import torch.nn.functional as F
import transformers

from backend.guidance.camera_condition import (
    CAMERA_CONDITION_DIM,
    accepts_camera,
    config_accepts_camera,
)
from backend.guidance.precision import precision_name
from protocol.errors import FieldError

BUILTIN_MODEL_NAME = "tiny-shapes"
"""Name of the model that ships inside the package."""

REQUIRED_COMPONENTS = ("unet", "scheduler", "text_encoder", "tokenizer")
"""Components every prior needs; "vae" is optional (latent models)."""


def builtin_model_path(name: str = BUILTIN_MODEL_NAME) -> Path:
    """Folder of a model that ships inside the installed package (tiny-shapes, tiny-clip)."""
    return Path(__file__).resolve().parent.parent / "builtin_model" / name


def resolve_model(name_or_path: str | None, builtin: str = BUILTIN_MODEL_NAME) -> str:
    """None or the `builtin` name -> its package folder; anything else is a folder or a hub
    id."""
    if name_or_path in (None, builtin):
        return str(builtin_model_path(builtin))
    return name_or_path


def _component_class(library: str, class_name: str) -> type:
    return getattr(importlib.import_module(library), class_name)


def read_model_index(source: str) -> dict:
    """The model_index.json of a local folder or a hub id, or `FieldError` naming the
    field: the folder is not a diffusers model, or the hub id is not reachable from here."""
    folder = Path(source)
    if folder.is_dir():
        index = folder / "model_index.json"
        if not index.is_file():
            raise FieldError(
                "model",
                f"model: {source!r} is not a diffusers model folder (it has no "
                "model_index.json); give a folder written by save_pretrained, or a hub id",
            )
        try:
            return json.loads(index.read_text())
        except ValueError as exc:
            raise FieldError("model", f"model: {index} is not valid JSON ({exc})") from exc
    try:
        from huggingface_hub import hf_hub_download  # hub ids, on machines that reach the hub

        return json.loads(Path(hf_hub_download(source, "model_index.json")).read_text())
    except (OSError, ValueError, ImportError) as exc:
        raise FieldError(
            "model",
            f"model: {source!r} is neither a local folder nor a hub id reachable from this "
            f"machine ({type(exc).__name__}); give the folder of a diffusers model",
        ) from exc


class ModelFamily(enum.StrEnum):
    """The kind of prior, which picks the preset table (`backend.pipelines.presets`)."""

    BUILTIN = "built-in"
    """Pixel-space and told the camera (BoxDream's condition): tiny-shapes and its retrains."""
    LATENT = "latent"
    """Works on VAE latents: Stable Diffusion 1.x / 2.x."""
    PIXEL = "pixel"
    """Pixel-space without the camera: DeepFloyd-IF-style (stage I)."""


def family_of(has_vae: bool, takes_camera: bool) -> ModelFamily:
    """The one rule: a VAE makes a latent model; a pixel model told BoxDream's camera
    condition is built-in-style; any other pixel model is IF-style."""
    if has_vae:
        return ModelFamily.LATENT
    return ModelFamily.BUILTIN if takes_camera else ModelFamily.PIXEL


def _read_component_config(source: str, name: str) -> dict:
    folder = Path(source)
    if folder.is_dir():
        return json.loads((folder / name / "config.json").read_text())
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(source, "config.json", subfolder=name)).read_text())


def model_family(name_or_path: str | None) -> ModelFamily:
    """The family of a model from its configs alone (nothing loaded): for a server's hello
    and for picking presets before the weights are read."""
    source = resolve_model(name_or_path)
    index = read_model_index(source)
    _check_local_components(source, index)
    try:
        unet = _read_component_config(source, "unet")
    except (OSError, ValueError) as exc:
        raise FieldError(
            "model", f"model: cannot read unet/config.json of {source!r} ({exc})"
        ) from exc
    has_vae = index.get("vae", [None])[0] is not None
    return family_of(has_vae, config_accepts_camera(unet))


def _check_local_components(source: str, index: dict) -> None:
    """A local folder must hold every component folder its model_index.json lists."""
    folder = Path(source)
    if not folder.is_dir():
        return
    missing = [
        name
        for name in (*REQUIRED_COMPONENTS, "vae")
        if index.get(name, [None])[0] is not None and not (folder / name).is_dir()
    ]
    unlisted = [name for name in REQUIRED_COMPONENTS if index.get(name, [None])[0] is None]
    if unlisted:
        raise FieldError(
            "model",
            f"model: {source!r} lacks the component(s) {', '.join(unlisted)} in its "
            "model_index.json (a text-to-image model needs unet, scheduler, text_encoder and "
            "tokenizer)",
        )
    if missing:
        raise FieldError(
            "model",
            f"model: {source!r} lacks the folder(s) {', '.join(f'{m}/' for m in missing)} that "
            "its model_index.json lists",
        )


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
        dtype: torch.dtype = torch.float32,
    ) -> DiffusionPrior:
        """Load every component listed in model_index.json (local folder or hub id); the
        networks in `dtype` (`backend.guidance.precision.resolve_precision`)."""
        source = resolve_model(name_or_path)
        index = read_model_index(source)
        _check_local_components(source, index)
        diffusers.utils.logging.disable_progress_bar()  # one progress line is the CLI's own
        transformers.utils.logging.disable_progress_bar()
        parts = {}
        for name in (*REQUIRED_COMPONENTS, "vae"):
            if index.get(name, [None])[0] is None:
                continue
            library, class_name = index[name]
            options = {}
            if name == "tokenizer":
                library, class_name = "transformers", "AutoTokenizer"
            elif name != "scheduler":
                options["torch_dtype"] = dtype
            loader = _component_class(library, class_name)
            try:
                parts[name] = loader.from_pretrained(source, subfolder=name, **options)
            except (OSError, ValueError) as exc:
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise FieldError(
                    "model", f"model: cannot load {name} ({class_name}) of {source!r}: {first_line}"
                ) from exc
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
            raise FieldError(
                "model",
                f"model: its U-Net takes a class label of {width} numbers, not the "
                f"{CAMERA_CONDITION_DIM}-number camera condition of this BoxDream "
                "(backend/guidance/camera_condition.py); retrain it, or use the shipped "
                "tiny-shapes",
            )
        device = torch.device(device)
        modules = [m for m in (unet, text_encoder, vae) if m is not None]
        for module in modules:
            if next(module.parameters()).dtype != dtype:
                module.to(dtype=dtype)
            module.to(device=device).eval().requires_grad_(False)
        return cls(unet, scheduler, text_encoder, tokenizer, vae, device, dtype)

    # ---- what it is --------------------------------------------------------------------------
    @property
    def family(self) -> ModelFamily:
        """Built-in-style, latent (SD) or pixel (IF-style): picks the preset table."""
        return family_of(self.vae is not None, self.camera_conditioned)

    @property
    def precision(self) -> str:
        """ "fp32", "fp16" or "bf16": the precision the networks run in."""
        return precision_name(self.dtype)

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
    @property
    def text_attention_mask(self) -> bool:
        """True when the text encoder reads the tokenizer's attention mask: T5 (DeepFloyd IF
        passes it), or a CLIP text model whose config says `use_attention_mask` (Stable
        Diffusion's CLIP runs without one, as diffusers' pipelines do)."""
        config = self.text_encoder.config
        if getattr(config, "model_type", "").startswith("clip"):
            return bool(getattr(config, "use_attention_mask", False))
        return True

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> [B, L, D] text embeddings in the prior's dtype (the U-Net's
        cross-attention input)."""
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        mask = tokens.attention_mask.to(self.device) if self.text_attention_mask else None
        out = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)
        return out[0].to(self.dtype)

    def unknown_token_fraction(self, prompt: str) -> float:
        """Share of the prompt's tokens the tokenizer maps to its unknown token."""
        unk = getattr(self.tokenizer, "unk_token_id", None)
        ids = self.tokenizer(prompt, add_special_tokens=False).input_ids
        return 0.0 if not ids or unk is None else sum(i == unk for i in ids) / len(ids)

    # ---- images <-> model space --------------------------------------------------------------
    def encode_images(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] fp32 renders in [0, 1] -> fp32 x_0 in model space (differentiable).

        Pixel models: resized to the native resolution and mapped to [-1, 1].
        Latent models: resized to the VAE's resolution, encoded in the prior's dtype, times the
        latent scaling, and cast back to fp32 (the distillation loss is summed over the latents
        and overflows fp16; threestudio casts back the same way).
        """
        size = self.resolution
        if rgb.shape[-1] != size or rgb.shape[-2] != size:
            rgb = F.interpolate(rgb, (size, size), mode="bilinear", align_corners=False)
        x = rgb * 2.0 - 1.0
        if self.vae is None:
            return x
        posterior = self.vae.encode(x.to(self.dtype)).latent_dist
        return posterior.sample().float() * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Model-space x_0 -> [B, 3, H, W] RGB in [0, 1] (for previews)."""
        if self.vae is not None:
            x0 = self.vae.decode((x0 / self.vae.config.scaling_factor).to(self.dtype)).sample
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
        unknown, c = 0; a U-Net without camera conditioning ignores them), in fp32 whatever
        the prior's dtype; a learned-variance half is dropped."""
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
        return out.float()

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
        raise FieldError("model", f"model: unsupported prediction_type {prediction!r}")

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
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        if prediction == "epsilon":
            return out
        if prediction == "v_prediction":
            # v = sqrt(a) eps - sqrt(1-a) x_0  =>  eps = sqrt(a) v + sqrt(1-a) x_t
            return a.sqrt() * out + (1 - a).sqrt() * x_t.float()
        if prediction == "sample":
            return (x_t.float() - a.sqrt() * out) / (1 - a).sqrt()
        raise FieldError("model", f"model: unsupported prediction_type {prediction!r}")

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
