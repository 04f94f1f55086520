"""Texture-mode editing: repaint a mesh by score distillation, never touching its geometry.

Per part of the mesh (one GLB primitive):

- Geometry: the vertex and face arrays read from the GLB are written back as they are, so
  positions, indices and their order stay bit-identical, and so do existing UVs. Only a part
  without UVs is unwrapped by xatlas: its vertices are then split along chart seams
  (re-indexed, same positions) and its texture is new. The texture is the only colour source
  of the result (vertex colours and the base colour factor are baked into it and dropped).
- Texture: initialised from the existing texture (times the base colour factor), else from the
  vertex colours, else from the base colour; output size at least the input's and at least
  `min_texture_size` (a part without a texture gets the preset's `texture_size`).
- Optimisation: the parameter is a logit-space delta D at a working resolution (longest side
  `working_size`) over the area-downsampled initial texture T_0:

      T = sigmoid(logit(T_0) + m * D)

  with m the region mask (1 where the texel's surface point is inside the region, and the
  gutter texels next to such texels). Renders of the mesh with T (the mesh renderer) go
  through the shared distillation loop. At the end D is upsampled bilinearly to the output
  size and applied to the full-resolution initial texture the same way, on the editable
  texels only (covered texels inside the region, plus their gutters, refilled by dilation);
  every other texel keeps its exact input value.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from backend.export.glb import write_glb
from backend.export.texture_bake import fill_gutters, texel_samples
from backend.export.textured_mesh import TexturedMesh
from backend.export.uv_unwrap import unwrap_uv
from backend.pipelines.distill_loop import DistillRun, distill
from backend.pipelines.edit_region import RegionBox, TexelRegion, texel_region
from backend.pipelines.edit_source import EditSource, surface_colour
from backend.pipelines.mesh_edit import MeshEdit
from backend.pipelines.prompt_guidance import prompt_view_sampler
from backend.render.cameras import Cameras
from backend.render.mesh_texture_renderer import TexturedSurface, render_textured
from backend.render.preview import PREVIEW_BACKGROUND, fixed_cameras, png_bytes, to_strip
from backend.render.renderer import RenderConfig, RenderOutput
from backend.render.shading import ShadingConfig, ShadingMode
from protocol.messages import JobWarning, Preview, Progress


@dataclass(frozen=True)
class TextureEditConfig:
    """Texture-mode settings beyond the preset's."""

    working_size: int = 128
    """Longest side, texels, of the optimised delta (renders are 32-64 px: a finer delta would
    get gradients on few texels per step)."""
    min_texture_size: int = 256
    """Smallest side of an output texture."""
    lr: float = 0.1
    """Adam learning rate of the logit delta."""
    padding: int = 4
    """Gutter texels around edited charts that follow them (and UV padding of new unwraps)."""
    logit_eps: float = 0.25 / 255.0
    """Colours are clipped to [eps, 1 - eps] before the logit; 0.25/255 keeps an unchanged
    8-bit value unchanged after the round trip."""


@dataclass(frozen=True, eq=False)
class PartTexture:
    """One part ready for texture editing, at the output resolution."""

    mesh: TexturedMesh
    """The part as written back: the input arrays (or the xatlas re-indexed ones) with UVs."""
    image: np.ndarray
    """[H, W, 3] uint8 initial texture."""
    region: TexelRegion
    """Which texels may change."""
    unwrapped: bool
    """True when the part had no UVs and was unwrapped (vertices re-indexed)."""


def _logit(colour: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.logit(colour.clamp(eps, 1.0 - eps))


def _resize(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """[C, H, W] -> [C, h, w]."""
    if tuple(image.shape[-2:]) == size:
        return image
    align = None if mode == "area" else False
    return F.interpolate(image[None], size, mode=mode, align_corners=align)[0]


def prepare_part(
    part: TexturedMesh,
    to_world: np.ndarray,
    region: RegionBox | None,
    texture_size: int,
    config: TextureEditConfig,
) -> PartTexture:
    """UVs (kept, or xatlas when missing), the initial texture and the region masks."""
    unwrapped = part.uvs is None
    if unwrapped:
        unwrap = unwrap_uv(part.vertices, part.faces, max(texture_size, config.min_texture_size))
        colours = None if part.vertex_colors is None else part.vertex_colors[unwrap.vertex_map]
        part = replace(
            part,
            vertices=part.vertices[unwrap.vertex_map],
            faces=unwrap.faces,
            uvs=unwrap.uvs,
            texture=None,  # meaningless without the UVs it was painted for
            vertex_colors=colours,
        )
    if part.texture is not None:
        height, width = part.texture.shape[:2]
        size = (max(height, config.min_texture_size), max(width, config.min_texture_size))
    else:
        side = max(texture_size, config.min_texture_size)
        size = (side, side)
    samples = texel_samples(part.vertices, part.faces, part.uvs, size)
    factor_is_white = part.base_color is None or all(c == 1.0 for c in part.base_color[:3])
    if part.texture is not None and part.texture.shape[:2] == size and factor_is_white:
        image = part.texture.copy()
    elif part.texture is not None:
        source = torch.tensor(part.texture).permute(2, 0, 1).float() / 255.0
        factor = torch.tensor(part.base_color[:3] if part.base_color else (1.0, 1.0, 1.0))
        resized = _resize(source, size, "bilinear") * factor.float()[:, None, None]
        image = np.round(resized.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    else:
        covered = np.zeros(size, dtype=bool)
        covered[samples.rows, samples.cols] = True
        baked = np.zeros((*size, 3), dtype=np.float32)
        baked[samples.rows, samples.cols] = surface_colour(
            part, samples.face_ids, samples.barycentric
        )
        image = np.round(fill_gutters(baked, covered, config.padding) * 255).astype(np.uint8)
    return PartTexture(
        mesh=part,
        image=image,
        region=texel_region(samples, size, to_world, region),
        unwrapped=unwrapped,
    )


def working_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """(H, W) scaled so the longest side is at most `longest` (never enlarged)."""
    scale = min(1.0, longest / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


class TextureEditModel(torch.nn.Module):
    """The optimised textures of a mesh: T_i = sigmoid(logit(T0_i) + m_i * D_i) per part i
    (module docstring), with the geometry they are rendered on."""

    def __init__(
        self,
        surface: TexturedSurface,
        bases: list[torch.Tensor],
        masks: list[torch.Tensor],
        eps: float,
    ) -> None:
        """surface: the parts in the unit frame; bases: [3, h_i, w_i] initial textures in
        [0, 1] at working size; masks: [1, h_i, w_i] region masks (1 = may change)."""
        super().__init__()
        self.surface = surface
        self.base_logits = [_logit(base, eps) for base in bases]
        self.masks = masks
        self.deltas = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.zeros_like(base)) for base in bases]
        )

    def masked_deltas(self) -> list[torch.Tensor]:
        """[3, h_i, w_i] m_i * D_i."""
        return [mask * delta for mask, delta in zip(self.masks, self.deltas, strict=True)]

    def textures(self) -> list[torch.Tensor]:
        """[3, h_i, w_i] current textures in [0, 1]."""
        return [
            torch.sigmoid(base + delta)
            for base, delta in zip(self.base_logits, self.masked_deltas(), strict=True)
        ]


def render_texture_model(
    model: TextureEditModel,
    cameras: Cameras,
    height: int,
    width: int,
    modes: torch.Tensor,
    backgrounds: torch.Tensor,
    render_config: RenderConfig,
    shading: ShadingConfig,
    generator: torch.Generator | None = None,
) -> RenderOutput:
    """The distillation loop's renderer for texture editing (`render_config` and `generator`
    are volume-rendering settings, unused by the rasteriser)."""
    return render_textured(
        model.surface, model.textures(), cameras, height, width, modes, backgrounds, shading
    )


@torch.no_grad()
def texture_preview_png(model: TextureEditModel, size: int = 64) -> bytes:
    """PNG strip of four lit views (front, side, back, other side), like the field previews."""
    cameras = fixed_cameras([0.0, 90.0, 180.0, -90.0])
    b = len(cameras)
    out = render_textured(
        model.surface,
        model.textures(),
        cameras,
        size,
        size,
        torch.full((b,), int(ShadingMode.LIT)),
        torch.full((b, 3), PREVIEW_BACKGROUND),
    )
    return png_bytes(to_strip(out.rgb.clamp(0, 1).cpu()), upscale=max(1, 128 // size))


def final_texture(part: PartTexture, delta: torch.Tensor, config: TextureEditConfig) -> np.ndarray:
    """Apply the learned masked delta ([3, h, w], working size) to the part's full-resolution
    initial texture on the editable texels and their gutters -> [H, W, 3] uint8."""
    size = part.image.shape[:2]
    base = torch.from_numpy(part.image).permute(2, 0, 1).float() / 255.0
    upsampled = _resize(delta.detach().float().cpu(), size, "bilinear")
    edited = torch.sigmoid(_logit(base, config.logit_eps) + upsampled)
    edited = edited.permute(1, 2, 0).numpy()
    filled = fill_gutters(edited, part.region.editable, config.padding)
    change = part.region.with_gutters(config.padding)
    image = part.image.copy()
    image[change] = np.round(np.clip(filled[change], 0.0, 1.0) * 255.0).astype(np.uint8)
    return image


def edit_texture(
    job: MeshEdit, texture_config: TextureEditConfig = TextureEditConfig()
) -> Generator[Progress | Preview | JobWarning, None, bytes]:
    """Repaint one input mesh; yields loop events and returns the result GLB (all parts,
    geometry as read)."""
    source, region, config = job.source, job.region, job.config
    parts = [
        prepare_part(part, source.part_to_world(i), region, config.texture_size, texture_config)
        for i, part in enumerate(source.parts)
    ]
    for part in parts:
        if part.unwrapped:
            yield JobWarning(
                message=f"{source.name}: part {part.mesh.name!r} had no UVs; it got an automatic "
                "UV layout (vertices split along the seams, same positions) and a new texture"
            )
    if not any(part.region.editable.any() for part in parts):
        yield JobWarning(
            message=f"{source.name}: no texel may change (the region misses its surface, or "
            "its UVs cover no texel); unchanged"
        )
        return _result_glb(source, parts, [part.image for part in parts])

    device = job.prior.device
    bases, masks, geometry = [], [], []
    for index, part in enumerate(parts):
        size = working_size(part.image.shape[:2], texture_config.working_size)
        image = torch.from_numpy(part.image).permute(2, 0, 1).float() / 255.0
        bases.append(_resize(image, size, "area").to(device))
        samples = texel_samples(part.mesh.vertices, part.mesh.faces, part.mesh.uvs, size)
        working = texel_region(samples, size, source.part_to_world(index), region)
        masks.append(torch.from_numpy(working.with_gutters(1)).float()[None].to(device))
        geometry.append(
            (
                torch.from_numpy(source.part_to_unit(index, part.mesh.vertices)).float(),
                torch.from_numpy(part.mesh.faces),
                torch.from_numpy(part.mesh.uvs).float(),
            )
        )
    surface = TexturedSurface.from_parts(geometry).to(device)
    model = TextureEditModel(surface, bases, masks, texture_config.logit_eps)

    # Textureless views carry no gradient to a texture.
    loop_config = replace(
        config, lr=texture_config.lr, shading=replace(config.shading, textureless_prob=0.0)
    )

    sample_views = prompt_view_sampler(job.prior, job.embeddings, loop_config)

    yield from distill(
        DistillRun(
            model,
            job.prior,
            job.method,
            loop_config,
            sample_views,
            job.generator,
            job.should_cancel,
            stage=f"texture {source.name}",
            renderer=render_texture_model,
            preview=texture_preview_png,
        )
    )
    images = [
        final_texture(part, delta, texture_config)
        for part, delta in zip(parts, model.masked_deltas(), strict=True)
    ]
    return _result_glb(source, parts, images)


def _result_glb(source: EditSource, parts: list[PartTexture], images: list[np.ndarray]) -> bytes:
    """GLB of the parts with their new textures."""
    meshes = [
        replace(
            part.mesh,
            name=source.result_name(index),
            texture=image,
            vertex_colors=None,
            base_color=None,
        )
        for index, (part, image) in enumerate(zip(parts, images, strict=True))
    ]
    return write_glb(meshes)
