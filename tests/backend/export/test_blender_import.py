"""The exported GLB opened by Blender's own glTF importer (bpy from PyPI), in a subprocess so
bpy's process-wide state stays out of the test run. Skipped when bpy is not installed."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from export_shapes import box_mesh

from backend.export.glb import read_glb, write_glb
from backend.export.texture_bake import bake_texture
from backend.export.textured_mesh import TexturedMesh
from backend.export.uv_unwrap import unwrap_uv

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy is not installed"),
]

_BLENDER_SCRIPT = """
import json, sys
import bpy
from mathutils import Vector

source, exported = sys.argv[1], sys.argv[2]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=source)
meshes = [o for o in bpy.data.objects if o.type == "MESH"]
report = {"objects": [o.name for o in bpy.data.objects]}
if meshes:
    obj = meshes[0]
    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    report["dimensions"] = list(obj.dimensions)
    report["world_min"] = [min(c[i] for c in corners) for i in range(3)]
    report["world_max"] = [max(c[i] for c in corners) for i in range(3)]
    report["uv_layers"] = list(obj.data.uv_layers.keys())
    material = obj.material_slots[0].material
    images = [n.image for n in material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image]
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    report["base_color_linked_to"] = [l.from_node.type for l in bsdf.inputs["Base Color"].links]
    report["roughness"] = bsdf.inputs["Roughness"].default_value
    report["metallic"] = bsdf.inputs["Metallic"].default_value
    if images:
        report["image_size"] = list(images[0].size)
        report["image_pixels"] = list(images[0].pixels[:])  # RGBA floats, bottom row first
    bpy.ops.export_scene.gltf(filepath=exported, export_format="GLB")
print("REPORT " + json.dumps(report))
"""


def _run_blender(source, exported) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", _BLENDER_SCRIPT, str(source), str(exported)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("REPORT ")]
    assert completed.returncode == 0 and lines, completed.stdout[-2000:] + completed.stderr[-2000:]
    return json.loads(lines[-1].removeprefix("REPORT "))


def test_blender_imports_the_glb_upright_with_its_texture(tmp_path):
    # A tall box standing on the ground, off the origin: 0.2 x 0.4 x 1.0 with z in [0, 1].
    vertices, faces = box_mesh((0.0, 0.0, 0.0), 1.0)
    vertices = (vertices + 0.5) * [0.2, 0.4, 1.0] + [0.1, 0.2, 0.0]
    unwrap = unwrap_uv(vertices, faces, texture_size=32)
    vertices = vertices[unwrap.vertex_map]
    baked = bake_texture(vertices, unwrap.faces, unwrap.uvs, torch.sigmoid, size=32)
    texture = np.round(baked.image * 255.0).astype(np.uint8)
    mesh = TexturedMesh("tall_box", vertices, unwrap.faces, unwrap.uvs, texture)
    source, exported = tmp_path / "tall_box.glb", tmp_path / "from_blender.glb"
    source.write_bytes(write_glb([mesh]))

    report = _run_blender(source, exported)

    assert report["objects"] == ["tall_box"]
    assert report["dimensions"] == pytest.approx([0.2, 0.4, 1.0], abs=1e-6)
    assert report["world_min"] == pytest.approx([0.1, 0.2, 0.0], abs=1e-6)
    assert report["world_max"] == pytest.approx([0.3, 0.6, 1.0], abs=1e-6)
    assert report["uv_layers"]
    assert report["base_color_linked_to"] == ["TEX_IMAGE"]
    assert report["roughness"] == pytest.approx(0.8)
    assert report["metallic"] == 0.0
    assert report["image_size"] == [32, 32]
    # Blender keeps the image bottom row first; flipped, it is our texture (row 0 on top).
    pixels = np.array(report["image_pixels"]).reshape(32, 32, 4)[::-1, :, :3]
    assert np.allclose(pixels * 255.0, texture, atol=0.5)

    # And what Blender's exporter writes, read_glb brings back to the same place (Z up).
    (back,) = read_glb(exported.read_bytes())
    world = back.vertices @ back.transform[:3, :3].T + back.transform[:3, 3]
    assert world.min(axis=0) == pytest.approx([0.1, 0.2, 0.0], abs=1e-6)
    assert world.max(axis=0) == pytest.approx([0.3, 0.6, 1.0], abs=1e-6)
    assert back.uvs is not None and back.texture is not None
    assert back.texture.shape == (32, 32, 3)
