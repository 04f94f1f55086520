"""A CLIP image-text model, for CLIP guidance (Dream Fields) and for scoring results.

One loader takes the built-in `tiny-clip` (shipped in the package), any local folder written by
`save_pretrained` in the `transformers` CLIP layout (`CLIPModel` weights + a `CLIPProcessor`),
or a hub id (an OpenAI or open_clip ViT-B/32 converted to transformers, on a machine that
reaches the hub). Images enter differentiably: resized to the processor's crop size and
normalised with its mean and standard deviation in torch, so a loss on the embeddings
backpropagates into the render.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

from backend.guidance.precision import precision_name
from backend.guidance.prior import ModelFamily, resolve_model
from protocol.errors import FieldError

BUILTIN_CLIP_NAME = "tiny-clip"
"""Name of the CLIP that ships inside the package."""


def _check_folder(source: str) -> None:
    """`FieldError` for a local folder that is not a CLIP checkpoint."""
    folder = Path(source)
    missing = [
        name
        for name in ("config.json", "preprocessor_config.json|processor_config.json")
        if not any((folder / option).is_file() for option in name.split("|"))
    ]
    if missing:
        raise FieldError(
            "clip",
            f"clip: {source!r} is not a CLIP checkpoint folder (it has no "
            f"{' or '.join(missing[0].split('|'))}); give a folder written by CLIPModel and "
            "CLIPProcessor save_pretrained, or a hub id",
        )


def image_embeddings(model: transformers.CLIPModel, pixels: torch.Tensor) -> torch.Tensor:
    """Unit image embeddings [B, D] (fp32) of normalised pixels [B, 3, S, S]."""
    pooled = model.vision_model(pixel_values=pixels).pooler_output
    return F.normalize(model.visual_projection(pooled).float(), dim=-1)


def text_embeddings(
    model: transformers.CLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Unit text embeddings [N, D] (fp32) of token ids and masks [N, L]."""
    pooled = model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    return F.normalize(model.text_projection(pooled).float(), dim=-1)


def normalise_pixels(rgb: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Images [B, 3, H, W] in [0, 1] -> (rgb - mean) / std with the processor's [3] values."""
    return (rgb - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


@dataclass(eq=False)
class ClipModel:
    """A frozen CLIP and what its image input needs."""

    model: transformers.CLIPModel
    tokenizer: object
    image_size: int
    """Side of the square image the vision tower takes (the processor's crop size)."""
    mean: torch.Tensor
    """[3] the processor's normalisation mean."""
    std: torch.Tensor
    """[3] the processor's normalisation standard deviation."""
    source: str
    """Where it was loaded from (folder or hub id)."""
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def load(
        cls,
        name_or_path: str | None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> ClipModel:
        """Load a CLIP checkpoint (local folder or hub id); `FieldError("clip", ...)` when the
        folder is not one or the hub id cannot be reached."""
        source = resolve_model(name_or_path, BUILTIN_CLIP_NAME)
        if Path(source).is_dir():
            _check_folder(source)
        transformers.utils.logging.disable_progress_bar()
        try:
            processor = transformers.CLIPProcessor.from_pretrained(source)
            model = transformers.CLIPModel.from_pretrained(source, torch_dtype=dtype)
        except (OSError, ValueError, TypeError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            where = (
                "cannot be loaded"
                if Path(source).is_dir()
                else "is neither a local folder nor a hub id reachable from this machine"
            )
            raise FieldError(
                "clip", f"clip: {source!r} {where} ({type(exc).__name__}: {first_line})"
            ) from exc
        return cls.from_components(model, processor, source, device=device, dtype=dtype)

    @classmethod
    def from_components(
        cls,
        model: transformers.CLIPModel,
        processor: transformers.CLIPProcessor,
        source: str = "",
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> ClipModel:
        """Wrap a built model and processor (tests build tiny ones from config)."""
        device = torch.device(device)
        model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        images = processor.image_processor
        crop = images.crop_size  # {"height", "width"} (a dict or transformers' SizeDict)
        size = int(crop["height"]) if hasattr(crop, "__getitem__") else int(crop)
        return cls(
            model=model,
            tokenizer=processor.tokenizer,
            image_size=size,
            mean=torch.tensor(images.image_mean, dtype=torch.float32, device=device),
            std=torch.tensor(images.image_std, dtype=torch.float32, device=device),
            source=source,
            device=device,
            dtype=dtype,
        )

    @property
    def precision(self) -> str:
        """ "fp32", "fp16" or "bf16": the dtype of the frozen networks."""
        return precision_name(self.dtype)

    @property
    def family(self) -> ModelFamily:
        """The preset table: the built-in one for a CLIP of the built-in world (its folder
        holds the world's vocabulary.json, as tiny-clip's does), else the GPU-sized latent
        one."""
        builtin = (Path(self.source) / "vocabulary.json").is_file()
        return ModelFamily.BUILTIN if builtin else ModelFamily.LATENT

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Unit text embeddings [N, D] (fp32)."""
        tokens = self.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(
            self.device
        )
        return text_embeddings(self.model, tokens["input_ids"], tokens["attention_mask"])

    def pixels(self, rgb: torch.Tensor) -> torch.Tensor:
        """Renders [B, 3, H, W] in [0, 1] -> the vision tower's input [B, 3, S, S]: bilinear
        resize to the crop size S, normalised (differentiable)."""
        if rgb.shape[-1] != self.image_size or rgb.shape[-2] != self.image_size:
            rgb = F.interpolate(
                rgb, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        return normalise_pixels(rgb, self.mean, self.std).to(self.dtype)

    def encode_images(self, rgb: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings [B, D] (fp32) of renders [B, 3, H, W] in [0, 1],
        differentiable in `rgb`."""
        return image_embeddings(self.model, self.pixels(rgb))
