"""CLIP score and CLIP R-precision of a result mesh against its prompt.

The exported mesh (textured, in its world transform) is rendered by the project's mesh renderer
(`backend.render.mesh_texture_renderer`) from N cameras around it, at the CLIP's input size,
lit and over a mid-grey background. Then, with unit CLIP embeddings g(I_n) of the views and
h(y) of captions:

    CLIP score   = (1/N) sum_n cos(g(I_n), h(prompt))
    R-precision  = (1/N) sum_n [ prompt ranks first among {prompt} + distractors for I_n ]

as in DreamFusion's table (R-precision there is over the captions of a benchmark; here the
distractors are every other shape x colour of the built-in world, `world_distractors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from backend.builtin_model import vocabulary
from backend.export.textured_mesh import TexturedMesh
from backend.guidance.clip_model import ClipModel
from backend.render.cameras import TRAINING_CAMERAS, Cameras, orbit_cameras
from backend.render.mesh_texture_renderer import TexturedSurface, render_textured
from backend.render.shading import ShadingMode

SCORE_VIEWS = 8
"""Views of a scored mesh, at azimuths evenly spaced around it."""
SCORE_ELEVATIONS_DEG = (15.0, 40.0)
"""Elevations the views alternate between, degrees."""
SCORE_BACKGROUND = 0.5
"""Grey level of the background behind scored views."""


@dataclass(frozen=True)
class ClipScore:
    """How well renders of a mesh match its prompt under a CLIP."""

    score: float
    """Mean cosine similarity of the views' and the prompt's embeddings."""
    r_precision: float
    """Share of views whose best caption among the prompt and the distractors is the prompt."""
    views: int
    """Rendered views."""
    distractors: int
    """Distractor captions."""
    best_captions: tuple[str, ...]
    """Each view's best caption."""


def score_cameras(views: int = SCORE_VIEWS) -> Cameras:
    """`views` orbit cameras at the training framing (`TRAINING_CAMERAS`' distance and field of
    view), azimuths evenly spaced from the front, elevations alternating
    `SCORE_ELEVATIONS_DEG`."""
    azimuth = torch.arange(views, dtype=torch.float32) * 360.0 / views
    azimuth = torch.where(azimuth > 180.0, azimuth - 360.0, azimuth)
    elevation = torch.tensor(
        [SCORE_ELEVATIONS_DEG[i % len(SCORE_ELEVATIONS_DEG)] for i in range(views)]
    )
    return orbit_cameras(
        elevation,
        azimuth,
        torch.full((views,), TRAINING_CAMERAS.distance_range[0]),
        torch.full((views,), TRAINING_CAMERAS.fovy_range_deg[0]),
    )


def _texture_of(mesh: TexturedMesh) -> np.ndarray:
    """[H, W, 3] float texture in [0, 1]: the baked texture, else a 1 x 1 of the material's
    base colour (white without one)."""
    if mesh.texture is not None and mesh.uvs is not None:
        return mesh.texture.astype(np.float32) / 255.0
    colour = mesh.base_color[:3] if mesh.base_color is not None else (1.0, 1.0, 1.0)
    return np.asarray(colour, dtype=np.float32).reshape(1, 1, 3)


def render_meshes(
    meshes: Sequence[TexturedMesh], cameras: Cameras, resolution: int
) -> torch.Tensor:
    """Lit renders [B, 3, S, S] in [0, 1] of the meshes in their world transforms."""
    parts, textures = [], []
    for mesh in meshes:
        homogeneous = np.concatenate([mesh.vertices, np.ones((len(mesh.vertices), 1))], axis=1)
        world = (homogeneous @ mesh.transform.T)[:, :3]
        uvs = mesh.uvs if mesh.texture is not None and mesh.uvs is not None else None
        parts.append(
            (
                torch.from_numpy(world).float(),
                torch.from_numpy(mesh.faces).long(),
                torch.zeros(len(world), 2) if uvs is None else torch.from_numpy(uvs).float(),
            )
        )
        textures.append(torch.from_numpy(_texture_of(mesh)).permute(2, 0, 1).contiguous())
    b = len(cameras)
    out = render_textured(
        TexturedSurface.from_parts(parts),
        textures,
        cameras,
        resolution,
        resolution,
        torch.full((b,), int(ShadingMode.LIT)),
        torch.full((b, 3), SCORE_BACKGROUND),
    )
    return out.rgb.clamp(0, 1)


def world_distractors(prompt: str) -> list[str]:
    """Every "a {colour} {shape}" of the built-in world except the (colour, shape) the prompt
    names."""
    report = vocabulary.read_prompt(prompt)
    return [
        f"a {colour} {shape}"
        for shape in vocabulary.SHAPES
        for colour in vocabulary.COLOURS
        if (shape, colour) != (report.shape, report.colour)
    ]


@torch.no_grad()
def clip_score(
    clip: ClipModel, images: torch.Tensor, prompt: str, distractors: Sequence[str]
) -> ClipScore:
    """CLIP score and R-precision of views [B, 3, H, W] in [0, 1] against `prompt`."""
    captions = [prompt, *distractors]
    text = clip.encode_text(captions)  # [1 + K, D]
    image = clip.encode_images(images.to(clip.device))  # [B, D]
    similarity = image @ text.T  # [B, 1 + K]
    best = similarity.argmax(dim=-1)
    return ClipScore(
        score=float(similarity[:, 0].mean()),
        r_precision=float((best == 0).float().mean()),
        views=images.shape[0],
        distractors=len(distractors),
        best_captions=tuple(captions[i] for i in best.tolist()),
    )


def score_meshes(
    clip: ClipModel,
    meshes: Sequence[TexturedMesh],
    prompt: str,
    distractors: Sequence[str] | None = None,
    views: int = SCORE_VIEWS,
) -> ClipScore:
    """Render the meshes from `views` cameras at the CLIP's input size and score them against
    `prompt` (distractors: the built-in world's by default)."""
    images = render_meshes(meshes, score_cameras(views), clip.image_size)
    chosen = world_distractors(prompt) if distractors is None else list(distractors)
    return clip_score(clip, images, prompt, chosen)
