"""Automatic UV atlas by xatlas: charts cut along seams and packed into the unit square."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xatlas


@dataclass(frozen=True, eq=False)
class UVUnwrap:
    """An unwrapped mesh. xatlas splits vertices along chart seams, so the output has its own
    vertex list; faces keep the input order (face i here is face i of the input)."""

    vertex_map: np.ndarray
    """[V'] int64: output vertex j is input vertex vertex_map[j]."""
    faces: np.ndarray
    """[F, 3] int64 indices into the output vertices."""
    uvs: np.ndarray
    """[V', 2] float64 in [0, 1]; OpenGL / Blender convention: u right, v up, origin at the
    bottom-left of the image (image row 0 is v = 1)."""


def unwrap_uv(
    vertices: np.ndarray, faces: np.ndarray, texture_size: int = 512, padding: int = 2
) -> UVUnwrap:
    """UV-unwrap a triangle mesh with xatlas, packing charts for a `texture_size` image with
    `padding` empty texels between charts. Deterministic.

    vertices [V, 3], faces [F, 3] -> UVUnwrap. Cost grows fast with F: decimate first.
    """
    atlas = xatlas.Atlas()
    atlas.add_mesh(
        np.ascontiguousarray(vertices, dtype=np.float32),
        np.ascontiguousarray(faces, dtype=np.uint32),
    )
    pack = xatlas.PackOptions()
    pack.resolution = texture_size
    pack.padding = padding
    pack.bilinear = True  # leave room for bilinear filtering at chart borders
    atlas.generate(xatlas.ChartOptions(), pack)
    vertex_map, new_faces, uvs = atlas[0]
    return UVUnwrap(
        vertex_map=vertex_map.astype(np.int64),
        faces=new_faces.astype(np.int64),
        uvs=uvs.astype(np.float64),
    )
