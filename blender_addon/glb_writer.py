"""An object's evaluated mesh as a GLB (binary glTF 2.0) in its local frame, for edit requests.

Written directly (no exporter operator, no selection changes): triangles from the evaluated
mesh (modifiers applied), one vertex per distinct (vertex, UV) pair, UVs of the active UV
map, and a PBR material whose baseColor is the Principled BSDF's colour or its image texture
(when that image is a PNG, packed or on disk). Axes follow glTF: Blender's (x, y, z) is
written as (x, z, -y) and UV v as 1 - v, as Blender's own exporter does.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import bpy
import numpy as np

ROUGHNESS = 0.8
_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _base_colour(obj: bpy.types.Object) -> tuple[tuple[float, ...], bytes | None]:
    """The first material's Principled base colour (RGBA) and its PNG texture, if any."""
    material = obj.active_material
    if material is None or not material.use_nodes:
        return (0.8, 0.8, 0.8, 1.0), None
    for node in material.node_tree.nodes:
        if node.type != "BSDF_PRINCIPLED":
            continue
        socket = node.inputs["Base Color"]
        colour = tuple(float(c) for c in socket.default_value)
        for link in socket.links:
            image = getattr(link.from_node, "image", None)
            if image is not None:
                return (1.0, 1.0, 1.0, 1.0), _png_bytes(image)
        return colour, None
    return (0.8, 0.8, 0.8, 1.0), None


def _png_bytes(image: bpy.types.Image) -> bytes | None:
    if image.packed_file is not None:
        data = bytes(image.packed_file.data)
    else:
        path = Path(bpy.path.abspath(image.filepath))
        data = path.read_bytes() if path.is_file() else b""
    return data if data.startswith(PNG_SIGNATURE) else None


def mesh_arrays(
    obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Positions [V, 3], triangles [F, 3] and UVs [V, 2] | None of `obj` (local frame, Z up)."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        positions = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", positions)
        loop_vertex = np.empty(len(mesh.loops), dtype=np.int64)
        mesh.loops.foreach_get("vertex_index", loop_vertex)
        triangle_loops = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
        mesh.loop_triangles.foreach_get("loops", triangle_loops)
        uv_layer = mesh.uv_layers.active
        uvs = None
        if uv_layer is not None:
            uvs = np.empty(len(mesh.loops) * 2, dtype=np.float32)
            uv_layer.data.foreach_get("uv", uvs)
            uvs = uvs.reshape(-1, 2)
    finally:
        evaluated.to_mesh_clear()
    positions = positions.reshape(-1, 3)
    if uvs is None:
        return positions, loop_vertex[triangle_loops].reshape(-1, 3), None
    keys = np.column_stack([loop_vertex.astype(np.float64), uvs.astype(np.float64)])
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    vertices = positions[loop_vertex[first]]
    return vertices, inverse.reshape(-1)[triangle_loops].reshape(-1, 3), uvs[first]


def glb_bytes(
    name: str,
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray | None,
    base_colour: tuple[float, ...],
    png: bytes | None,
) -> bytes:
    """A one-node GLB: Z-up `vertices` [V, 3], `faces` [F, 3], `uvs` [V, 2] (v up)."""
    chunks: list[bytes] = []
    views: list[dict] = []

    def add_view(data: bytes, target: int | None) -> int:
        offset = sum(len(chunk) for chunk in chunks)
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        chunks.append(data + b"\0" * (-len(data) % 4))
        return len(views) - 1

    gltf_positions = np.stack([vertices[:, 0], vertices[:, 2], -vertices[:, 1]], axis=1)
    gltf_positions = np.ascontiguousarray(gltf_positions, dtype=np.float32)
    accessors = [
        {
            "bufferView": add_view(gltf_positions.tobytes(), _ARRAY_BUFFER),
            "componentType": _FLOAT,
            "count": len(gltf_positions),
            "type": "VEC3",
            "min": gltf_positions.min(axis=0).tolist(),
            "max": gltf_positions.max(axis=0).tolist(),
        },
        {
            "bufferView": add_view(
                np.ascontiguousarray(faces, dtype=np.uint32).tobytes(), _ELEMENT_ARRAY_BUFFER
            ),
            "componentType": _UINT32,
            "count": int(faces.size),
            "type": "SCALAR",
        },
    ]
    attributes = {"POSITION": 0}
    if uvs is not None:
        gltf_uvs = np.ascontiguousarray(np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], axis=1), np.float32)
        accessors.append(
            {
                "bufferView": add_view(gltf_uvs.tobytes(), _ARRAY_BUFFER),
                "componentType": _FLOAT,
                "count": len(gltf_uvs),
                "type": "VEC2",
            }
        )
        attributes["TEXCOORD_0"] = 2
    pbr: dict = {
        "baseColorFactor": list(base_colour),
        "metallicFactor": 0.0,
        "roughnessFactor": ROUGHNESS,
    }
    document: dict = {
        "asset": {"version": "2.0", "generator": "BoxDream Blender add-on"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "meshes": [
            {
                "name": name,
                "primitives": [{"attributes": attributes, "indices": 1, "material": 0}],
            }
        ],
        "materials": [{"name": f"{name}_material", "pbrMetallicRoughness": pbr}],
        "accessors": accessors,
    }
    if png is not None and uvs is not None:
        document["images"] = [{"bufferView": add_view(png, None), "mimeType": "image/png"}]
        document["samplers"] = [{}]
        document["textures"] = [{"source": 0, "sampler": 0}]
        pbr["baseColorTexture"] = {"index": 0}
    binary = b"".join(chunks)
    document["bufferViews"] = views
    document["buffers"] = [{"byteLength": len(binary)}]
    header = json.dumps(document, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 4)
    total = 12 + 8 + len(header) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<4sII", b"glTF", 2, total),
            struct.pack("<II", len(header), 0x4E4F534A),
            header,
            struct.pack("<II", len(binary), 0x004E4942),
            binary,
        ]
    )


def object_glb(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> bytes:
    """`obj`'s evaluated mesh and base colour as a GLB in its local frame (no transform)."""
    vertices, faces, uvs = mesh_arrays(obj, depsgraph)
    base_colour, png = _base_colour(obj)
    return glb_bytes(obj.name, vertices, faces, uvs, base_colour, png)
