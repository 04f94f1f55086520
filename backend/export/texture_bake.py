"""Bake a texture from a colour function of 3D position, through a mesh's UV layout.

Each triangle is rasterised in UV space: for every texel centre inside it, the barycentric
coordinates give the 3D surface point the texel shows; the colour function is queried there.
Texels no triangle covers are then filled by dilation (seams need a few texels of gutter so
bilinear filtering and mip-maps do not pull in the background).

Texel <-> UV (OpenGL / Blender / trimesh convention, origin bottom-left, image row 0 at the
top): texel (row i, col j) of an H x W image has its centre at
    u = (j + 0.5) / W,   v = 1 - (i + 0.5) / H.

`texel_samples` is the reusable half: texture editing needs, for each covered texel, its
surface point and face.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

ColourFn = Callable[[torch.Tensor], torch.Tensor]
"""points [N, 3] float32 (CPU) -> colours [N, 3] in [0, 1]."""

_MAX_CANDIDATES = 2_000_000
"""Texel-triangle pairs tested at once (bounds the memory of rasterising big textures)."""


@dataclass(frozen=True, eq=False)
class TexelSamples:
    """The texels a UV layout covers and the surface point each one shows; one entry per
    covered texel, in row-major texel order."""

    rows: np.ndarray
    """[T] int64 image row (0 = top)."""
    cols: np.ndarray
    """[T] int64 image column."""
    face_ids: np.ndarray
    """[T] int64 face the texel centre falls in (or the sliver face the texel was given)."""
    barycentric: np.ndarray
    """[T, 3] float64 weights of the face's three corners."""
    points: np.ndarray
    """[T, 3] float64 surface points (vertices interpolated with `barycentric`)."""


@dataclass(frozen=True, eq=False)
class BakedTexture:
    """A baked texture and the texels the mesh really covers."""

    image: np.ndarray
    """[H, W, 3] float32 in [0, 1], gutters filled."""
    mask: np.ndarray
    """[H, W] bool: texels the mesh covers (centre inside a UV triangle, or a sliver's centroid
    texel), before filling."""


def _image_size(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ValueError(f"texture size must be positive, got {size}")
    return height, width


def texel_samples(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    size: int | tuple[int, int],
) -> TexelSamples:
    """Rasterise the mesh's UV triangles into an image of `size` (int or (height, width)).

    vertices [V, 3], faces [F, 3], uvs [V, 2] (per vertex, convention in the module docstring)
    -> TexelSamples. A texel whose centre lies on an edge shared by two triangles goes to the
    lower face index. A face that holds no texel centre (a sliver, or zero UV area) gets the
    texel under its UV centroid if that texel is free.
    """
    height, width = _image_size(size)
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    uvs = np.asarray(uvs, dtype=np.float64)

    # Triangle corners in continuous pixel coordinates, where texel (i, j) is centred at
    # (x, y) = (j, i): x = u W - 0.5, y = (1 - v) H - 0.5.
    corner_uv = uvs[faces]  # [F, 3, 2]
    px = corner_uv[..., 0] * width - 0.5  # [F, 3]
    py = (1.0 - corner_uv[..., 1]) * height - 0.5  # [F, 3]

    # Twice the signed area; a triangle with none covers no texel centre.
    x0, x1, x2 = px[:, 0], px[:, 1], px[:, 2]
    y0, y1, y2 = py[:, 0], py[:, 1], py[:, 2]
    denominator = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)  # [F]

    # Texel bounding box of each triangle, clipped to the image.
    col_lo = np.clip(np.ceil(px.min(axis=1)), 0, width).astype(np.int64)
    col_hi = np.clip(np.floor(px.max(axis=1)), -1, width - 1).astype(np.int64)
    row_lo = np.clip(np.ceil(py.min(axis=1)), 0, height).astype(np.int64)
    row_hi = np.clip(np.floor(py.max(axis=1)), -1, height - 1).astype(np.int64)
    box_w = np.maximum(col_hi - col_lo + 1, 0)
    box_h = np.maximum(row_hi - row_lo + 1, 0)
    counts = np.where(np.abs(denominator) > 1e-12, box_w * box_h, 0)  # [F] candidates

    # Faces in groups of at most _MAX_CANDIDATES texel candidates (one face may exceed it).
    ends = np.cumsum(counts)
    found_faces, found_texels, found_bary = [], [], []
    first = 0
    while first < len(faces):
        budget_end = (ends[first - 1] if first > 0 else 0) + _MAX_CANDIDATES
        last = max(first + 1, int(np.searchsorted(ends, budget_end, side="right")))
        group = np.arange(first, min(last, len(faces)))
        first = group[-1] + 1

        # Enumerate every texel of every bounding box: candidate c belongs to face_of[c] and is
        # the local[c]-th texel of that box in row-major order.
        face_of = np.repeat(group, counts[group])
        if len(face_of) == 0:
            continue
        starts = np.cumsum(counts[group]) - counts[group]
        local = np.arange(len(face_of)) - np.repeat(starts, counts[group])
        rows = row_lo[face_of] + local // box_w[face_of]
        cols = col_lo[face_of] + local % box_w[face_of]

        # Barycentric coordinates of the texel centre (x, y) = (col, row):
        #   l0 = ((y1 - y2)(x - x2) + (x2 - x1)(y - y2)) / d
        #   l1 = ((y2 - y0)(x - x2) + (x0 - x2)(y - y2)) / d,   l2 = 1 - l0 - l1.
        dx = cols - x2[face_of]
        dy = rows - y2[face_of]
        d = denominator[face_of]
        l0 = ((y1 - y2)[face_of] * dx + (x2 - x1)[face_of] * dy) / d
        l1 = ((y2 - y0)[face_of] * dx + (x0 - x2)[face_of] * dy) / d
        l2 = 1.0 - l0 - l1
        inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)

        found_faces.append(face_of[inside])
        found_texels.append(rows[inside] * width + cols[inside])
        found_bary.append(np.stack([l0, l1, l2], axis=-1)[inside])

    face_ids = np.concatenate(found_faces) if found_faces else np.zeros(0, np.int64)
    texels = np.concatenate(found_texels) if found_texels else np.zeros(0, np.int64)
    bary = np.concatenate(found_bary) if found_bary else np.zeros((0, 3))

    # One sample per texel: candidates are in face order, and np.unique returns the first
    # occurrence, so shared-edge texels go to the lower face index. Output is row-major.
    texels, first_hit = np.unique(texels, return_index=True)
    face_ids = face_ids[first_hit]
    bary = np.clip(bary[first_hit], 0.0, 1.0)
    bary /= bary.sum(axis=1, keepdims=True)

    # A sliver thinner than a texel may hold no texel centre; it still gets the texel under its
    # UV centroid when no other face has that texel, so its colour is baked there instead of
    # being dilated in from whichever chart lies nearest.
    has_texel = np.zeros(len(faces), dtype=bool)
    has_texel[face_ids] = True
    slivers = np.flatnonzero(~has_texel)
    sliver_texels = np.clip(np.round(py[slivers].mean(axis=1)), 0, height - 1).astype(
        np.int64
    ) * width + np.clip(np.round(px[slivers].mean(axis=1)), 0, width - 1).astype(np.int64)
    sliver_texels, first_sliver = np.unique(sliver_texels, return_index=True)
    free = ~np.isin(sliver_texels, texels)
    texels = np.concatenate([texels, sliver_texels[free]])
    face_ids = np.concatenate([face_ids, slivers[first_sliver[free]]])
    bary = np.concatenate([bary, np.full((int(free.sum()), 3), 1.0 / 3.0)])
    order = np.argsort(texels)
    texels, face_ids, bary = texels[order], face_ids[order], bary[order]
    points = np.einsum("tk,tkd->td", bary, vertices[faces[face_ids]])
    return TexelSamples(
        rows=texels // width,
        cols=texels % width,
        face_ids=face_ids,
        barycentric=bary,
        points=points,
    )


def _box_sum_3x3(values: np.ndarray) -> np.ndarray:
    """Sum over the 3x3 neighbourhood of every texel, zeros outside: [H, W, ...] -> same."""
    pad = ((1, 1), (1, 1)) + ((0, 0),) * (values.ndim - 2)
    padded = np.pad(values, pad)
    rows = padded[:-2] + padded[1:-1] + padded[2:]  # separable: rows, then columns
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]


def fill_gutters(image: np.ndarray, mask: np.ndarray, padding: int) -> np.ndarray:
    """Fill uncovered texels: `padding` rounds of dilation (each empty texel with a filled
    8-neighbour takes their mean), then the mean covered colour everywhere still empty (keeps
    small mip-maps from turning dark).

    image [H, W, C] float, mask [H, W] bool -> image [H, W, C] float32 (a new array).
    """
    filled = np.where(mask[..., None], image, 0.0).astype(np.float32)
    known = mask.copy()
    if not known.any():
        return filled
    for _ in range(padding):
        # Sum over each texel's 3x3 neighbourhood of known colours and of known texels; their
        # ratio is the mean colour of the known neighbours (the box includes the texel itself,
        # which is unknown wherever we write).
        known_count = _box_sum_3x3(known.astype(np.float32))
        grow = ~known & (known_count > 0)
        if not grow.any():
            break
        colour_sum = _box_sum_3x3(filled)
        filled[grow] = colour_sum[grow] / known_count[grow][:, None]
        known |= grow
    filled[~known] = filled[mask].mean(axis=0)
    return filled


def bake_texture(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    colour_fn: ColourFn,
    size: int | tuple[int, int] = 512,
    padding: int = 4,
    chunk_size: int = 65_536,
) -> BakedTexture:
    """Bake `colour_fn` (3D point -> RGB) into a texture through the mesh's UVs.

    vertices [V, 3], faces [F, 3], uvs [V, 2] -> BakedTexture (image [H, W, 3] float32 in
    [0, 1], coverage mask [H, W] bool). `size` is an int or (height, width); `padding` texels of
    gutter are dilated around every chart. The colour function sees float32 CPU points in
    chunks of `chunk_size`, without gradients.
    """
    height, width = _image_size(size)
    samples = texel_samples(vertices, faces, uvs, (height, width))
    colours = np.zeros((len(samples.points), 3), dtype=np.float32)
    points = torch.from_numpy(samples.points.astype(np.float32))
    with torch.no_grad():
        for start in range(0, len(points), chunk_size):
            chunk = colour_fn(points[start : start + chunk_size])
            colours[start : start + chunk_size] = chunk.float().cpu().numpy().reshape(-1, 3)
    image = np.zeros((height, width, 3), dtype=np.float32)
    mask = np.zeros((height, width), dtype=bool)
    image[samples.rows, samples.cols] = np.clip(np.nan_to_num(colours), 0.0, 1.0)
    mask[samples.rows, samples.cols] = True
    return BakedTexture(image=fill_gutters(image, mask, padding), mask=mask)
