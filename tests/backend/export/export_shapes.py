"""Analytic fields and small meshes shared by the export tests."""

from __future__ import annotations

import json
import struct

import numpy as np
import torch

RED = (0.9, 0.1, 0.1)
BLUE = (0.1, 0.2, 0.9)


class SphereField:
    """density = k * sigmoid((r0 - |x|) / s); albedo RED where x > 0, BLUE elsewhere."""

    def __init__(
        self, radius: float = 0.5, peak: float = 20.0, softness: float = 0.004, bound: float = 1.0
    ) -> None:
        self.radius = radius
        self.peak = peak
        self.softness = softness
        self.bound = bound
        self.centre = torch.zeros(3)

    def density(self, points: torch.Tensor) -> torch.Tensor:
        distance = (points - self.centre).norm(dim=-1)
        return self.peak * torch.sigmoid((self.radius - distance) / self.softness)

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        red = torch.tensor(RED, dtype=points.dtype, device=points.device)
        blue = torch.tensor(BLUE, dtype=points.dtype, device=points.device)
        return torch.where(points[:, :1] > 0, red, blue)


def box_mesh(centre: tuple[float, float, float], size: float) -> tuple[np.ndarray, np.ndarray]:
    """A closed axis-aligned cube: vertices [8, 3], faces [12, 3] wound outward."""
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    faces = np.array(
        [
            [0, 1, 3], [0, 3, 2],  # x = -0.5
            [4, 6, 7], [4, 7, 5],  # x = +0.5
            [0, 4, 5], [0, 5, 1],  # y = -0.5
            [2, 3, 7], [2, 7, 6],  # y = +0.5
            [0, 2, 6], [0, 6, 4],  # z = -0.5
            [1, 5, 7], [1, 7, 3],  # z = +0.5
        ]
    )  # fmt: skip
    return corners * size + np.array(centre), faces


def raw_glb(
    positions: np.ndarray,
    indices: np.ndarray | None = None,
    mode: int = 4,
    extensions_required: tuple[str, ...] = (),
    name: str = "raw",
) -> bytes:
    """A minimal hand-made GLB: one node, one mesh, one primitive of `mode` (4 triangles,
    5 strip, 6 fan, 0 points) with float32 POSITION and optional uint32 indices."""
    binary = positions.astype(np.float32).tobytes()
    accessors = [{"bufferView": 0, "componentType": 5126, "count": len(positions), "type": "VEC3"}]
    views = [{"buffer": 0, "byteOffset": 0, "byteLength": len(binary)}]
    primitive = {"attributes": {"POSITION": 0}, "mode": mode}
    if indices is not None:
        index_bytes = indices.astype(np.uint32).tobytes()
        views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(index_bytes)})
        accessors.append(
            {"bufferView": 1, "componentType": 5125, "count": len(indices), "type": "SCALAR"}
        )
        primitive["indices"] = 1
        binary += index_bytes
    header = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "meshes": [{"name": name, "primitives": [primitive]}],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(binary)}],
    }
    if extensions_required:
        header["extensionsUsed"] = list(extensions_required)
        header["extensionsRequired"] = list(extensions_required)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    body += struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def glb_json(data: bytes) -> dict:
    """The JSON chunk of a GLB."""
    (length,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20 : 20 + length])


def edit_glb(data: bytes, edit) -> bytes:
    """A GLB whose JSON chunk went through `edit(header)` (in place); BIN chunk unchanged."""
    header = glb_json(data)
    (json_length,) = struct.unpack_from("<I", data, 12)
    rest = data[20 + json_length :]
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + rest
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body
