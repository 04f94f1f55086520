"""Meshes for the edit tests: a textured cube with its own UV layout, built directly."""

from __future__ import annotations

import numpy as np

from backend.export.glb import write_glb
from backend.export.textured_mesh import TexturedMesh
from protocol.messages import IDENTITY, EditRequest, MeshInput

RED = (217, 26, 26)
"""The built-in model's red (0.85, 0.10, 0.10) in 8 bits."""


def uv_cube(half: float = 0.35, texture_size: int = 256, colour=RED) -> TexturedMesh:
    """A cube of 24 vertices (4 per side) and 12 triangles, counter-clockwise from outside;
    side k gets UV cell (k % 3, k // 3) of a 3 x 2 grid (with a margin), one colour."""
    vertices, faces, uvs = [], [], []
    for k, (axis, sign) in enumerate((a, s) for a in range(3) for s in (1.0, -1.0)):
        u_axis, v_axis = (axis + 1) % 3, (axis + 2) % 3
        corners = []
        for cu, cv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            point = np.zeros(3)
            point[axis] = sign * half
            point[u_axis] = cu * half * sign
            point[v_axis] = cv * half
            corners.append(point)
            col, row = k % 3, k // 3
            uvs.append(((col + 0.1 + 0.8 * (cu + 1) / 2) / 3, (row + 0.1 + 0.8 * (cv + 1) / 2) / 2))
        base = 4 * k
        vertices.extend(corners)
        faces.extend([(base, base + 1, base + 2), (base, base + 2, base + 3)])
    texture = np.empty((texture_size, texture_size, 3), dtype=np.uint8)
    texture[:] = colour
    return TexturedMesh(
        name="cube",
        vertices=np.array(vertices),
        faces=np.array(faces, dtype=np.int64),
        uvs=np.array(uvs),
        texture=texture,
    )


def edit_request(glbs: list[bytes], prompt: str, **kwargs) -> EditRequest:
    """An edit request for meshes named mesh0, mesh1, ... at the identity transform."""
    transforms = kwargs.pop("transforms", [IDENTITY] * len(glbs))
    meshes = [
        MeshInput(name=f"mesh{i}", glb=glb, transform=tuple(transform))
        for i, (glb, transform) in enumerate(zip(glbs, transforms, strict=True))
    ]
    return EditRequest(meshes=meshes, prompt=prompt, **kwargs)


def cube_glb(**kwargs) -> bytes:
    """GLB bytes of `uv_cube(**kwargs)`."""
    return write_glb([uv_cube(**kwargs)])
