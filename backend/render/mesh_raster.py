"""Differentiable rasterisation of a triangle mesh in pure PyTorch (CPU or CUDA).

Three parts, as nvdiffrast splits them (`backend.render.nvdiffrast_raster` is the CUDA twin):

1. `rasterise`: visibility, the nearest face per pixel centre (a z-buffer over
   `triangle_raster`'s coverage, no gradient), then each covered pixel's perspective-correct
   barycentric weights recomputed from the projected corners with autograd on, so attributes
   interpolated with them (position, normal, colour) carry gradients to the vertices.
2. `interpolate`: per-vertex attributes [V, C] -> per-pixel [B, H, W, C].
3. `antialias`: analytic edge antialiasing (Laine et al. 2020, "Modular Primitives", sec. 4.3),
   which is what gives silhouettes a gradient. For every pair of neighbouring pixels
   (horizontal and vertical) that see different faces, the nearer face's exit edge along the
   segment between the two pixel centres is found; if it is a silhouette edge (a boundary edge,
   or one whose other face turns away from the camera), the crossing point alpha in [0, 1]
   (pixel steps from the foreground centre, a function of the projected corners) blends
   the pair:

       alpha < 1/2:  c_fg += (1/2 - alpha) (c_bg - c_fg)
       alpha >= 1/2: c_bg += (alpha - 1/2) (c_fg - c_bg)

   continuous in alpha (no change at 1/2, and when the edge passes a pixel centre the pixel
   changes face with the same colour on both sides), with d c / d alpha = c_fg - c_bg: moving a
   silhouette vertex changes the image in proportion to the colour step across the edge.

Pixel (row i, col j) of an H x W image has its centre at (x, y) = (j, i) in the projected
coordinates, where `camera_rays` puts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.geometry.triangle_raster import triangle_coverage
from backend.render.cameras import Cameras

NEAR = 1e-3
"""Triangles with a corner closer to the camera plane than this (scene units) are skipped."""

_EMPTY_KEY = torch.iinfo(torch.int64).max


@dataclass(frozen=True, eq=False)
class Projection:
    """Mesh vertices seen by B cameras (differentiable in the vertices)."""

    xy: torch.Tensor
    """[B, V, 2] pixel coordinates (x right, y down; pixel centres at integers)."""
    depth: torch.Tensor
    """[B, V] distance in front of the camera plane."""


@dataclass(frozen=True, eq=False)
class MeshRaster:
    """One rasterisation of B views of H x W pixels by the PyTorch rasteriser."""

    face_ids: torch.Tensor
    """[B, H, W] int64 nearest face, -1 where no face covers the pixel centre."""
    depth: torch.Tensor
    """[B, H, W] camera-plane depth of the nearest face (0 on misses; no gradient)."""
    weights: torch.Tensor
    """[K, 3] perspective-correct barycentric weights of the K covered pixels (in flat
    b * H * W + i * W + j order), differentiable in the vertices."""
    projection: Projection
    """The projected vertices."""
    faces: torch.Tensor
    """[F, 3] int64 vertex indices."""
    silhouette: torch.Tensor
    """[B, F, 3] bool: edge k of face f (opposite corner k) is a silhouette edge in view b."""

    @property
    def hit(self) -> torch.Tensor:
        """[B, H, W] bool: pixels a face covers."""
        return self.face_ids >= 0


def project(vertices: torch.Tensor, cameras: Cameras, height: int, width: int) -> Projection:
    """Pinhole projection of vertices [V, 3] by B cameras (OpenGL camera axes, `fovy`)."""
    c2w = cameras.c2w.to(vertices)
    rotation, position = c2w[:, :3, :3], c2w[:, :3, 3]
    # Camera space (OpenGL, looking down -z): p_cam = R^T (p - position).
    cam = torch.einsum("bji,bvj->bvi", rotation, vertices[None] - position[:, None])
    z = -cam[..., 2]
    focal = 0.5 * height / torch.tan(0.5 * cameras.fovy.to(vertices))  # [B] pixels
    x = cam[..., 0] / z * focal[:, None] + 0.5 * width - 0.5
    y = -cam[..., 1] / z * focal[:, None] + 0.5 * height - 0.5
    return Projection(xy=torch.stack([x, y], -1), depth=z)


def _barycentric_2d(corners: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """2D barycentric weights of points [K, 2] in triangles [K, 3, 2] -> [K, 3]:
    l0 = ((y1 - y2)(x - x2) + (x2 - x1)(y - y2)) / d, l1 likewise, l2 = 1 - l0 - l1, with d
    twice the signed area."""
    x0, x1, x2 = corners[..., 0].unbind(-1)
    y0, y1, y2 = corners[..., 1].unbind(-1)
    d = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
    dx, dy = points[:, 0] - x2, points[:, 1] - y2
    l0 = ((y1 - y2) * dx + (x2 - x1) * dy) / d
    l1 = ((y2 - y0) * dx + (x0 - x2) * dy) / d
    return torch.stack([l0, l1, 1.0 - l0 - l1], -1)


def nearest_faces(
    projection: Projection, faces: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Z-buffer: [B, H, W] int64 index of the nearest face whose triangle holds each pixel
    centre (-1: none). No gradient."""
    with torch.no_grad():
        xy, z = projection.xy.detach(), projection.depth.detach()
        b = xy.shape[0]
        keys = torch.full((b, height * width), _EMPTY_KEY, dtype=torch.int64, device=xy.device)
        for view in range(b):
            corner_z = z[view][faces]  # [F, 3]
            in_front = (corner_z > NEAR).all(-1, keepdim=True)
            fx = torch.where(in_front, xy[view, :, 0][faces], torch.nan)
            fy = torch.where(in_front, xy[view, :, 1][faces], torch.nan)
            for hits in triangle_coverage(fx, fy, height, width):
                # Perspective-correct depth 1/z = sum_k l_k / z_k; as float32 > 0 its bit
                # pattern orders like the value, so (depth bits, face) packs into one key whose
                # minimum per pixel is the nearest face (ties: the lower face index).
                inv_z = (hits.barycentric / corner_z[hits.triangles].double()).sum(-1)
                depth_bits = (1.0 / inv_z).float().view(torch.int32).long()
                key = (depth_bits << 32) | hits.triangles
                keys[view].scatter_reduce_(0, hits.pixels, key, reduce="amin")
        hit = keys != _EMPTY_KEY
        return torch.where(hit, keys & 0xFFFFFFFF, -1).view(b, height, width)


def silhouette_edges(
    projection: Projection, faces: torch.Tensor, neighbours: torch.Tensor
) -> torch.Tensor:
    """[B, F, 3] bool: edge k of face f is a silhouette in view b (no neighbour across it, or
    the neighbour faces the other way on screen)."""
    with torch.no_grad():
        corners = projection.xy.detach()[:, faces]  # [B, F, 3, 2]
        e1 = corners[:, :, 1] - corners[:, :, 0]
        e2 = corners[:, :, 2] - corners[:, :, 0]
        facing = (e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]) > 0  # [B, F]
        other = facing[:, neighbours.clamp(min=0)]  # [B, F, 3]
        return (neighbours < 0)[None] | (other != facing[..., None])


def rasterise(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    neighbours: torch.Tensor,
    cameras: Cameras,
    height: int,
    width: int,
) -> MeshRaster:
    """Rasterise B views of a mesh: vertices [V, 3] (differentiable), faces [F, 3],
    neighbours [F, 3] (`face_neighbours`)."""
    projection = project(vertices, cameras, height, width)
    face_ids = nearest_faces(projection, faces, height, width)
    b = face_ids.shape[0]
    flat = face_ids.view(-1)
    hit = (flat >= 0).nonzero()[:, 0]
    view = hit // (height * width)
    centre = _pixel_centres(hit, height, width).to(vertices)
    corner_ids = faces[flat[hit]]  # [K, 3]
    corners = projection.xy[view[:, None], corner_ids]  # [K, 3, 2]
    corner_z = projection.depth[view[:, None], corner_ids]  # [K, 3]
    screen = _barycentric_2d(corners, centre)
    # Perspective correction: b_k = (l_k / z_k) / sum_j (l_j / z_j).
    over_z = screen / corner_z
    inv_depth = over_z.sum(-1, keepdim=True)
    weights = over_z / inv_depth
    depth = torch.zeros(b * height * width, device=vertices.device, dtype=vertices.dtype)
    depth[hit] = (1.0 / inv_depth[:, 0]).detach()
    return MeshRaster(
        face_ids=face_ids,
        depth=depth.view(b, height, width),
        weights=weights,
        projection=projection,
        faces=faces,
        silhouette=silhouette_edges(projection, faces, neighbours),
    )


def interpolate(raster: MeshRaster, attributes: torch.Tensor) -> torch.Tensor:
    """Per-vertex attributes [V, C] -> per-pixel [B, H, W, C] (zeros where no face is)."""
    b, h, w = raster.face_ids.shape
    flat = raster.face_ids.view(-1)
    hit = (flat >= 0).nonzero()[:, 0]
    values = (raster.weights[..., None] * attributes[raster.faces[flat[hit]]]).sum(1)  # [K, C]
    out = torch.zeros(b * h * w, attributes.shape[-1], device=values.device, dtype=values.dtype)
    return out.index_put((hit,), values).view(b, h, w, -1)


def _pixel_centres(flat: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Flat pixel indices b * H * W + i * W + j -> [K, 2] centres (x, y) = (j, i)."""
    local = flat % (height * width)
    return torch.stack([local % width, local // width], -1)


def antialias(raster: MeshRaster, image: torch.Tensor) -> torch.Tensor:
    """Blend [B, H, W, C] across the silhouette edges between neighbouring pixels (module
    docstring), differentiably in the image and in the projected vertices."""
    b, h, w, c = image.shape
    flat_image = image.reshape(-1, c)
    deltas = torch.zeros_like(flat_image)
    index = torch.arange(b * h * w, device=image.device).view(b, h, w)
    face_ids, depth = raster.face_ids, raster.depth
    for step in ((0, 1), (1, 0)):  # horizontal, then vertical neighbours
        di, dj = step
        p = index[:, : h - di, : w - dj].reshape(-1)
        q = index[:, di:, dj:].reshape(-1)
        fp, fq = face_ids.view(-1)[p], face_ids.view(-1)[q]
        dp, dq = depth.view(-1)[p], depth.view(-1)[q]
        pair = (fp != fq) & ((fp >= 0) | (fq >= 0))
        p, q, fp, fq, dp, dq = p[pair], q[pair], fp[pair], fq[pair], dp[pair], dq[pair]
        p_front = (fq < 0) | ((fp >= 0) & (dp < dq))
        fg = torch.where(p_front, p, q)
        bg = torch.where(p_front, q, p)
        face = torch.where(p_front, fp, fq)
        view = fg // (h * w)
        corners = raster.projection.xy[view[:, None], raster.faces[face]]  # [K, 3, 2]

        inside = _barycentric_2d(corners, _pixel_centres(fg, h, w).to(corners))  # [K, 3] >= 0
        outside = _barycentric_2d(corners, _pixel_centres(bg, h, w).to(corners))
        # Along the segment fg -> bg, l_k falls to 0 at alpha_k = l_k(fg) / (l_k(fg) - l_k(bg));
        # the face is left through the edge opposite the corner whose weight hits 0 first.
        leaving = outside < 0
        alphas = torch.where(
            leaving, inside / torch.where(leaving, inside - outside, 1.0), torch.inf
        )
        k = alphas.detach().argmin(-1)
        alpha = alphas.gather(1, k[:, None])[:, 0]
        crossing = torch.isfinite(alpha.detach()) & raster.silhouette[view, face, k]
        fg, bg, alpha = fg[crossing], bg[crossing], alpha[crossing].clamp(0.0, 1.0)[:, None]
        c_fg, c_bg = flat_image[fg], flat_image[bg]
        near_fg = alpha < 0.5
        deltas = deltas.index_add(0, fg, torch.where(near_fg, (0.5 - alpha) * (c_bg - c_fg), 0.0))
        deltas = deltas.index_add(0, bg, torch.where(near_fg, 0.0, (alpha - 0.5) * (c_fg - c_bg)))
    return (flat_image + deltas).view(b, h, w, c)
