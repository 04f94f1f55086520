import contextlib
import io

import numpy as np
import pytest
import trimesh
from export_shapes import box_mesh, edit_glb, glb_json, raw_glb

from backend.export.errors import MeshError
from backend.export.glb import read_glb, write_glb
from backend.export.textured_mesh import TexturedMesh
from backend.export.uv_unwrap import unwrap_uv


def _textured_box(name: str = "box", centre=(0.25, 0.5, 2.0)) -> TexturedMesh:
    """A unit box (coordinates exact in float32) with xatlas UVs and a 4x8 gradient texture."""
    vertices, faces = box_mesh(centre, 1.0)
    unwrap = unwrap_uv(vertices, faces, texture_size=64)
    texture = np.zeros((4, 8, 3), dtype=np.uint8)
    texture[..., 0] = np.arange(8) * 30
    texture[..., 1] = np.arange(4)[:, None] * 60
    return TexturedMesh(
        name=name,
        vertices=vertices[unwrap.vertex_map],
        faces=unwrap.faces,
        uvs=unwrap.uvs.astype(np.float32).astype(np.float64),
        texture=texture,
    )


def _rotation_z(degrees: float, translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    angle = np.radians(degrees)
    matrix = np.eye(4)
    matrix[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    matrix[:3, 3] = translation
    return matrix


def test_file_is_y_up_and_reading_restores_z_up():
    box = _textured_box()
    data = write_glb([box])
    header = glb_json(data)
    position = header["accessors"][header["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    # Z-up (x, y, z) is stored as (x, z, -y): the box's top (z = 2.5) is glTF +Y.
    assert position["max"] == pytest.approx([0.75, 2.5, 0.0])
    assert position["min"] == pytest.approx([-0.25, 1.5, -1.0])

    (back,) = read_glb(data)
    assert back.name == "box"
    assert np.array_equal(back.vertices, box.vertices)  # +Z stays +Z, bit for bit
    assert back.vertices[:, 2].max() == 2.5
    assert np.array_equal(back.faces, box.faces)
    # glTF stores 1 - v as float32: new UVs come back within float32 rounding; UVs read from a
    # file come back bit for bit (next test).
    assert np.allclose(back.uvs, box.uvs, rtol=0, atol=1e-7)
    assert np.array_equal(back.texture, box.texture)
    assert np.array_equal(back.transform, np.eye(4))


def test_trimesh_loads_the_glb_with_its_pbr_texture():
    scene = trimesh.load_scene(io.BytesIO(write_glb([_textured_box()])), file_type="glb")
    (geometry,) = scene.geometry.values()
    material = geometry.visual.material
    assert material.baseColorTexture.size == (8, 4)
    assert material.metallicFactor == 0.0
    assert material.roughnessFactor == pytest.approx(0.8)
    assert geometry.visual.uv.shape == (len(geometry.vertices), 2)


def test_read_write_read_is_bit_exact():
    rng = np.random.default_rng(0)
    box = _textured_box()
    box.vertices = box.vertices + rng.normal(scale=0.1, size=box.vertices.shape)
    box.uvs = rng.uniform(0.0, 1.0, size=box.uvs.shape)
    box.uvs[:3] = [[0.0, 0.0], [1.0, 1.0], [2.0**-20, 1e-6]]
    box.transform = _rotation_z(33.0, (0.1, -2.0, 0.7))
    first = read_glb(write_glb([box]))[0]
    second = read_glb(write_glb([first]))[0]
    for name in ("vertices", "faces", "uvs", "texture", "transform"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert np.allclose(first.vertices, box.vertices, atol=1e-6)
    assert np.allclose(first.uvs, box.uvs, atol=1e-6)
    assert np.allclose(first.transform, box.transform, atol=1e-6)


def test_several_meshes_keep_names_transforms_and_vertex_colours():
    textured = _textured_box("textured")
    textured.transform = _rotation_z(90.0, (1.0, 2.0, 3.0))
    vertices, faces = box_mesh((0.0, 0.0, 0.0), 0.5)
    colours = np.tile(np.array([[10, 200, 30, 255]], dtype=np.uint8), (8, 1))
    coloured = TexturedMesh(
        "coloured", vertices, faces, vertex_colors=colours, base_color=(1.0, 0.0, 0.0, 1.0)
    )
    meshes = {mesh.name: mesh for mesh in read_glb(write_glb([textured, coloured]))}
    assert set(meshes) == {"textured", "coloured"}
    assert np.allclose(meshes["textured"].transform, textured.transform, atol=1e-7)
    # The world position of the top of the box is where it was (Z up survives the transform).
    world = meshes["textured"].transform @ np.append(meshes["textured"].vertices[0], 1.0)
    assert np.allclose(world, textured.transform @ np.append(textured.vertices[0], 1.0))
    back = meshes["coloured"]
    assert back.uvs is None and back.texture is None
    assert np.array_equal(back.vertex_colors, colours)
    assert back.base_color == pytest.approx((1.0, 0.0, 0.0, 1.0))


def test_triangle_strips_are_triangulated_in_order():
    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float32)
    (mesh,) = read_glb(raw_glb(positions, np.arange(4), mode=5, name="strip"))
    assert mesh.name == "strip"
    assert len(mesh.faces) == 2
    assert np.array_equal(mesh.vertices, positions[:, [0, 2, 1]] * [1, -1, 1])


def test_mesh_without_indices_or_material_reads():
    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    (mesh,) = read_glb(raw_glb(positions))
    assert np.array_equal(mesh.faces, [[0, 1, 2]])
    assert mesh.uvs is None and mesh.texture is None and mesh.vertex_colors is None


def test_nodes_and_primitives_come_in_file_order_with_stable_names():
    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)

    def two_primitives_three_nodes(header):
        primitives = header["meshes"][0]["primitives"]
        primitives.append(dict(primitives[0]))
        header["nodes"] = [
            {"name": "raw", "mesh": 0},
            {"mesh": 0, "translation": [0.0, 0.0, 1.0]},  # unnamed; glTF +Z is Z-up -Y
            {"name": "raw", "mesh": 0},
        ]
        header["scenes"] = [{"nodes": [2, 0, 1]}]

    data = edit_glb(raw_glb(positions, np.arange(3)), two_primitives_three_nodes)
    for _ in range(2):  # the same names every time
        meshes = read_glb(data)
        names = [mesh.name for mesh in meshes]
        assert names == ["raw.0", "raw.1", "node_1.0", "node_1.1", "raw.1.0", "raw.1.1"]
    assert np.array_equal(meshes[2].transform[:3, 3], [0.0, -1.0, 0.0])
    assert [mesh.name for mesh in read_glb(write_glb(meshes))] == names


_TRIANGLE = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (b"hello, not a model", "glb", "not a binary glTF"),
        (raw_glb(_TRIANGLE)[:-20], "glb", "truncated"),
        (b"glTF" + (1).to_bytes(4, "little") + raw_glb(_TRIANGLE)[8:], "glb", "version 1"),
        (raw_glb(_TRIANGLE, np.arange(3), mode=6), "faces", "fans"),
        (
            raw_glb(_TRIANGLE, extensions_required=("KHR_draco_mesh_compression",)),
            "glb",
            "KHR_draco_mesh_compression",
        ),
        (raw_glb(_TRIANGLE, mode=0), "glb", "no triangle mesh"),
        (raw_glb(_TRIANGLE, np.zeros(0)), "faces", "empty"),
        (raw_glb(np.array([[0, 0, 0], [np.nan, 0, 0], [0, 1, 0]])), "vertices", "NaN"),
        (raw_glb(_TRIANGLE, np.array([0, 1, 7])), "faces", "indices"),
    ],
)
def test_bad_files_raise_mesh_error(data, field, message):
    with pytest.raises(MeshError, match=message) as caught:
        read_glb(data)
    assert caught.value.field == field


def test_face_limit_counts_the_whole_file():
    data = write_glb([_textured_box("a"), _textured_box("b")])
    assert len(read_glb(data, max_faces=24)) == 2
    with pytest.raises(MeshError, match="24 faces, the limit is 23") as caught:
        read_glb(data, max_faces=23)
    assert caught.value.field == "faces"


def test_write_rejects_inconsistent_meshes():
    box = _textured_box()
    with pytest.raises(MeshError, match="unique"):
        write_glb([box, box])
    box.uvs = None
    with pytest.raises(MeshError, match="no uvs"):
        write_glb([box])
    with pytest.raises(MeshError, match="no mesh"):
        write_glb([])


def test_corrupted_files_raise_only_mesh_error():
    data = write_glb([_textured_box()])
    rng = np.random.default_rng(0)
    for trial in range(200):
        corrupted = bytearray(data)
        for position in rng.integers(0, len(data), size=3):
            corrupted[position] = rng.integers(0, 256)
        if trial % 4 == 0:
            corrupted = corrupted[: rng.integers(0, len(data))]
        # Reading may succeed (a harmless byte) or fail, but only with MeshError.
        with contextlib.suppress(MeshError):
            read_glb(bytes(corrupted))
