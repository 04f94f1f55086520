"""GLB (binary glTF 2.0) writing and reading for TexturedMesh, through trimesh.

Axes: BoxDream is Z up, glTF is Y up. Writing maps a Z-up point (x, y, z) to glTF (x, z, -y),
exactly what Blender's glTF exporter does, so Blender's importer (which maps back) shows the
object as we had it; reading applies the inverse (x, y, z)_glTF -> (x, -z, y). Both maps only
permute and negate coordinates, so a read-then-write round trip is bit-exact.

Reading keeps vertex and face order exactly as stored (trimesh with `process=False`, no
merging), because a texture-only edit must hand back the artist's geometry unchanged. UVs are
read from the raw accessor rather than trimesh's float32 flip, so they round-trip exactly too.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Sequence

import numpy as np
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial, SimpleMaterial

from backend.export.errors import MeshError
from backend.export.textured_mesh import TexturedMesh, validate_mesh

ROUGHNESS = 0.8
"""Roughness factor of written materials (a matte look; score distillation bakes light-free
albedo)."""

_GLB_MAGIC = b"glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_GL_TRIANGLE_FAN = 6
_RAW_UV_ATTRIBUTE = "_BOXDREAM_RAW_TEXCOORD_0"
"""A custom attribute name (leading underscore: trimesh hands such attributes over untouched)
aliasing TEXCOORD_0, so the reader sees the stored UVs bit for bit."""
_NODE_KEY_PREFIX = "_boxdream_node_"
"""Prefix of the temporary node names that carry the glTF node index through trimesh."""
_LOAD_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    OSError,
    struct.error,
)
"""What trimesh and Pillow raise on malformed glTF content and undecodable images."""
_HARMLESS_REQUIRED_EXTENSIONS = frozenset({"KHR_materials_unlit"})
"""Required extensions whose absence only changes shading, never geometry or UVs."""

# Z up (x, y, z) -> glTF Y up (x, z, -y), as a 4x4 change of basis for transforms.
_Z_UP_TO_GLTF = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)


def z_up_to_gltf(points: np.ndarray) -> np.ndarray:
    """[N, 3] Z-up points -> [N, 3] glTF (Y-up) points: (x, y, z) -> (x, z, -y)."""
    return np.stack([points[:, 0], points[:, 2], -points[:, 1]], axis=1)


def gltf_to_z_up(points: np.ndarray) -> np.ndarray:
    """[N, 3] glTF (Y-up) points -> [N, 3] Z-up points: (x, y, z) -> (x, -z, y)."""
    return np.stack([points[:, 0], -points[:, 2], points[:, 1]], axis=1)


def write_glb(meshes: Sequence[TexturedMesh]) -> bytes:
    """One GLB holding every mesh as a named node with its transform.

    Each mesh gets a PBR material (metallic 0, roughness ROUGHNESS) whose baseColorTexture is
    the mesh's texture as PNG (and normalTexture its normal map); vertex colours go to COLOR_0,
    normals (when given) to NORMAL. Raises MeshError on invalid meshes
    or repeated names.
    """
    if not meshes:
        raise MeshError("no mesh to write", "glb")
    names = [mesh.name for mesh in meshes]
    if len(set(names)) != len(names):
        raise MeshError(f"mesh names must be unique, got {names}", "glb")
    scene = trimesh.Scene()
    for mesh in meshes:
        validate_mesh(mesh)
        if mesh.texture is not None and mesh.uvs is None:
            raise MeshError(f"mesh {mesh.name!r} has a texture but no uvs", "uvs")
        normal_map = mesh.normal_texture
        material = PBRMaterial(
            name=f"{mesh.name}_material",
            baseColorTexture=None if mesh.texture is None else Image.fromarray(mesh.texture),
            normalTexture=None if normal_map is None else Image.fromarray(normal_map),
            baseColorFactor=None if mesh.base_color is None else list(mesh.base_color),
            metallicFactor=0.0,
            roughnessFactor=ROUGHNESS,
        )
        visual = trimesh.visual.TextureVisuals(uv=mesh.uvs, material=material)
        if mesh.vertex_colors is not None:
            visual.vertex_attributes["color"] = mesh.vertex_colors.astype(np.uint8)
        geometry = trimesh.Trimesh(
            vertices=z_up_to_gltf(mesh.vertices),
            faces=mesh.faces,
            visual=visual,
            process=False,
            vertex_normals=None if mesh.normals is None else z_up_to_gltf(mesh.normals),
        )
        scene.add_geometry(
            geometry,
            node_name=mesh.name,
            geom_name=mesh.name,
            transform=_Z_UP_TO_GLTF @ mesh.transform @ _Z_UP_TO_GLTF.T,
        )
    return scene.export(file_type="glb")


def read_glb(data: bytes, max_faces: int | None = None) -> list[TexturedMesh]:
    """Every triangle mesh of a GLB, one TexturedMesh per (node, primitive), in Z-up.

    Meshes come in glTF node order, named after their node (unnamed nodes: "node_<index>";
    repeated names get ".1", ".2", ...); a node whose mesh has several primitives (one per
    material) gives parts named "<node>.<primitive>". Vertex and face order are kept as
    stored; triangle strips are turned into triangles; point and line primitives are skipped.
    `max_faces` limits the faces of the whole file. Raises MeshError for unreadable files,
    unsupported required extensions, triangle fans, no mesh, empty meshes, NaN or infinite
    vertices, bad indices and too many faces.
    """
    header, binary = _split_glb(data)
    node_names = _prepare_header(header)
    try:
        scene = trimesh.load_scene(
            io.BytesIO(_join_glb(header, binary)), file_type="glb", process=False
        )
        # trimesh hangs a multi-primitive node's parts under the node's frame with random
        # names; key every part by (glTF node index, primitive number) instead, through the
        # node keys _prepare_header gave the nodes.
        parents = scene.graph.transforms.parents
        parts: dict[tuple[int, int], tuple[trimesh.Trimesh, np.ndarray]] = {}
        part_counts: dict[int, int] = {}
        for graph_node in scene.graph.nodes_geometry:
            transform, geometry_name = scene.graph[graph_node]
            geometry = scene.geometry[geometry_name]
            if not isinstance(geometry, trimesh.Trimesh):
                continue
            index = _node_index(graph_node)
            if index is None:
                index = _node_index(parents[graph_node])
            if index is None:
                raise ValueError(f"unexpected scene node {graph_node!r}")
            part = part_counts.get(index, 0)
            part_counts[index] = part + 1
            parts[(index, part)] = (geometry, transform)
        meshes = []
        for (index, part), (geometry, transform) in sorted(parts.items()):
            name = node_names[index] if part_counts[index] == 1 else f"{node_names[index]}.{part}"
            meshes.append(_textured_mesh(name, geometry, transform))
    except _LOAD_ERRORS as error:
        raise MeshError(f"unreadable GLB: {type(error).__name__}: {error}", "glb") from error
    if not meshes:
        raise MeshError("the GLB holds no triangle mesh", "glb")
    for mesh in meshes:
        validate_mesh(mesh)
    total_faces = sum(len(mesh.faces) for mesh in meshes)
    if max_faces is not None and total_faces > max_faces:
        raise MeshError(f"the GLB has {total_faces} faces, the limit is {max_faces}", "faces")
    return meshes


def _prepare_header(header: dict) -> list[str]:
    """Check what the loader relies on and adapt the header for it, in place; return the
    display name of every glTF node (unique).

    MeshError for unsupported required extensions, triangle fans, and meshes, nodes or buffer
    layout of the wrong shape (trimesh would fail on those with unhelpful errors). Adaptations:
    TEXCOORD_0 gets an alias that trimesh passes through raw (exact UVs), and every node is
    renamed to a key holding its index (trimesh's scene graph then tells which node is which).
    """
    required = header.get("extensionsRequired", [])
    if not isinstance(required, list):
        raise MeshError("unreadable GLB: 'extensionsRequired' is not a list", "glb")
    unsupported = sorted({str(name) for name in required} - _HARMLESS_REQUIRED_EXTENSIONS)
    if unsupported:
        raise MeshError(f"GLB requires unsupported extensions: {unsupported}", "glb")

    gltf_meshes = header.get("meshes", [])
    if not isinstance(gltf_meshes, list):
        raise MeshError("unreadable GLB: 'meshes' is not a list", "glb")
    if gltf_meshes and not all(
        isinstance(header.get(key), list) for key in ("accessors", "bufferViews", "buffers")
    ):
        raise MeshError("unreadable GLB: meshes without accessors, buffer views or buffers", "glb")
    for mesh_index, gltf_mesh in enumerate(gltf_meshes):
        primitives = gltf_mesh.get("primitives") if isinstance(gltf_mesh, dict) else None
        if not isinstance(primitives, list) or not all(
            isinstance(p, dict) and isinstance(p.get("attributes"), dict) for p in primitives
        ):
            raise MeshError(f"unreadable GLB: mesh {mesh_index} has malformed primitives", "glb")
        for primitive in primitives:
            if primitive.get("mode", 4) == _GL_TRIANGLE_FAN:
                raise MeshError(
                    f"mesh {gltf_mesh.get('name', mesh_index)!r} uses triangle fans, "
                    "which are not supported; export triangles",
                    "faces",
                )
            attributes = primitive["attributes"]
            if "TEXCOORD_0" in attributes:
                attributes[_RAW_UV_ATTRIBUTE] = attributes["TEXCOORD_0"]

    nodes = header.get("nodes", [])
    if not isinstance(nodes, list) or not all(isinstance(node, dict) for node in nodes):
        raise MeshError("unreadable GLB: 'nodes' is not a list of objects", "glb")
    names: list[str] = []
    seen: dict[str, int] = {}
    for index, node in enumerate(nodes):
        name = str(node.get("name") or f"node_{index}")
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(name if count == 0 else f"{name}.{count}")
        node["name"] = f"{_NODE_KEY_PREFIX}{index}"
    return names


def _node_index(graph_node: str) -> int | None:
    """The glTF node index in a key set by _prepare_header, or None for other frames."""
    match = re.fullmatch(rf"{_NODE_KEY_PREFIX}(\d+)", str(graph_node))
    return None if match is None else int(match.group(1))


def _textured_mesh(name: str, geometry: trimesh.Trimesh, transform: np.ndarray) -> TexturedMesh:
    """Convert one trimesh geometry (glTF frame) and its node transform to a Z-up mesh."""
    visual = geometry.visual
    uvs = None
    raw_uv = geometry.vertex_attributes.get(_RAW_UV_ATTRIBUTE)
    if raw_uv is not None:
        uvs = _normalised(np.asarray(raw_uv))[:, :2].copy()
        uvs[:, 1] = 1.0 - uvs[:, 1]  # glTF origin top-left -> OpenGL origin bottom-left

    texture, base_color = None, None
    material = getattr(visual, "material", None)
    if isinstance(material, PBRMaterial):
        image = material.baseColorTexture
        if material.baseColorFactor is not None:
            factor = _normalised(np.asarray(material.baseColorFactor))
            base_color = tuple(float(c) for c in np.append(factor, [1.0] * (4 - len(factor))))
    elif isinstance(material, SimpleMaterial):
        image = material.image
    else:
        image = None
    if image is not None:
        texture = np.asarray(image.convert("RGB"), dtype=np.uint8)

    colours = None
    if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "vertex":
        colours = np.asarray(visual.vertex_colors, dtype=np.uint8)
    elif "color" in getattr(visual, "vertex_attributes", {}):
        colours = _rgba8(np.asarray(visual.vertex_attributes["color"]))

    return TexturedMesh(
        name=name,
        vertices=gltf_to_z_up(np.asarray(geometry.vertices, dtype=np.float64)),
        faces=np.asarray(geometry.faces, dtype=np.int64),
        uvs=uvs,
        texture=texture,
        vertex_colors=colours,
        base_color=base_color,
        transform=_Z_UP_TO_GLTF.T @ np.asarray(transform, dtype=np.float64) @ _Z_UP_TO_GLTF,
    )


def _normalised(values: np.ndarray) -> np.ndarray:
    """glTF accessor values -> float64: normalised unsigned integers to [0, 1], floats as is."""
    if np.issubdtype(values.dtype, np.unsignedinteger):
        return values.astype(np.float64) / np.iinfo(values.dtype).max
    return values.astype(np.float64)


def _rgba8(colours: np.ndarray) -> np.ndarray:
    """[V, 3 | 4] colours of any glTF encoding -> [V, 4] uint8 RGBA."""
    if colours.dtype != np.uint8:
        colours = np.round(np.clip(_normalised(colours), 0.0, 1.0) * 255.0).astype(np.uint8)
    if colours.shape[1] == 3:
        colours = np.concatenate([colours, np.full((len(colours), 1), 255, np.uint8)], axis=1)
    return colours


def _split_glb(data: bytes) -> tuple[dict, bytes | None]:
    """GLB container -> (JSON header, BIN chunk or None); MeshError if it is not a GLB 2.0."""
    if len(data) < 20 or data[:4] != _GLB_MAGIC:
        raise MeshError("unreadable GLB: not a binary glTF file (no 'glTF' magic)", "glb")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise MeshError(f"unreadable GLB: glTF version {version}, only 2 is supported", "glb")
    if length > len(data):
        raise MeshError(f"unreadable GLB: truncated ({len(data)} of {length} bytes)", "glb")
    chunks: dict[int, bytes] = {}
    offset = 12
    while offset + 8 <= length:
        chunk_length, chunk_type = struct.unpack_from("<II", data, offset)
        if offset + 8 + chunk_length > length:
            raise MeshError("unreadable GLB: a chunk runs past the end of the file", "glb")
        chunks.setdefault(chunk_type, data[offset + 8 : offset + 8 + chunk_length])
        offset += 8 + chunk_length
    if _CHUNK_JSON not in chunks:
        raise MeshError("unreadable GLB: no JSON chunk", "glb")
    try:
        header = json.loads(chunks[_CHUNK_JSON])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MeshError(f"unreadable GLB: bad JSON chunk: {error}", "glb") from error
    if not isinstance(header, dict):
        raise MeshError("unreadable GLB: the JSON chunk is not an object", "glb")
    return header, chunks.get(_CHUNK_BIN)


def _join_glb(header: dict, binary: bytes | None) -> bytes:
    """(JSON header, BIN chunk) -> GLB bytes; chunks padded to 4 bytes as the format asks."""
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<II", len(text), _CHUNK_JSON) + text
    if binary is not None:
        binary += b"\0" * (-len(binary) % 4)
        chunks += struct.pack("<II", len(binary), _CHUNK_BIN) + binary
    return _GLB_MAGIC + struct.pack("<II", 2, 12 + len(chunks)) + chunks
