"""Import a job's result: GLB meshes into the "BoxDream" collection, placed where they belong.

The GLBs go through Blender's bundled glTF importer (enabled here if the user turned it
off), which maps glTF's Y up to Blender's Z up and packs the baked baseColor texture into the
.blend, so textures never go missing. Placement, by job kind:

- generate: standing on the 3D cursor where the job was started (bottom centre of its bounds
  on the cursor), scaled so its largest dimension is the job's size;
- compose: the server's world transform, which puts each mesh inside its prompt box;
- edit: the source object's world matrix; the source is hidden, never deleted.

Files are written only under the extension's user folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import addon_utils
import bpy
from mathutils import Matrix, Vector

from .preferences import user_dir
from .properties import BoxDreamJob
from .protocol.messages import Result, ResultMesh

COLLECTION_NAME = "BoxDream"
GLTF_ADDON = "io_scene_gltf2"


class ImportFailed(Exception):
    """A result mesh could not be imported; the message says which and why."""


def ensure_gltf_importer() -> None:
    """Enable Blender's bundled glTF add-on for this session if it is off."""
    if addon_utils.check(GLTF_ADDON)[1]:
        return
    addon_utils.enable(GLTF_ADDON, default_set=False)
    if not addon_utils.check(GLTF_ADDON)[1]:
        raise ImportFailed(
            "Blender's glTF importer (io_scene_gltf2) is not available; "
            "enable it in Preferences > Add-ons"
        )


def boxdream_collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    """The scene's "BoxDream" collection (created and linked on first use)."""
    collection = bpy.data.collections.get(COLLECTION_NAME)
    if collection is None:
        collection = bpy.data.collections.new(COLLECTION_NAME)
    if collection.name not in scene.collection.children:
        scene.collection.children.link(collection)
    return collection


def matrix_of(transform: tuple[float, ...]) -> Matrix:
    """A 4x4 Matrix from 16 row-major floats (the protocol's transforms)."""
    return Matrix([transform[0:4], transform[4:8], transform[8:12], transform[12:16]])


def transform_of(matrix: Matrix) -> tuple[float, ...]:
    """16 row-major floats (the protocol's transforms) from a 4x4 Matrix."""
    return tuple(float(value) for row in matrix for value in row)


@contextlib.contextmanager
def _window_context(context: bpy.types.Context) -> Iterator[None]:
    """Run operators with a window when called from a timer (which has none)."""
    window_manager = context.window_manager
    if context.window is None and window_manager is not None and window_manager.windows:
        with context.temp_override(window=window_manager.windows[0]):
            yield
    else:
        yield


def import_mesh(
    context: bpy.types.Context, scene: bpy.types.Scene, mesh: ResultMesh, job_id: str
) -> bpy.types.Object:
    """Import one result mesh into the scene's BoxDream collection; returns the object.

    The object's mesh data is in its local frame, unplaced (identity world matrix).
    """
    ensure_gltf_importer()
    path = user_dir("results", job_id) / f"{bpy.path.clean_name(mesh.name)}.glb"
    path.write_bytes(mesh.glb)
    before = set(bpy.data.objects)
    with _window_context(context), context.temp_override(scene=scene):
        outcome = bpy.ops.import_scene.gltf(filepath=str(path), merge_vertices=False)
    if "FINISHED" not in outcome:
        raise ImportFailed(f"{mesh.name}: the glTF importer gave {sorted(outcome)}")
    created = [obj for obj in bpy.data.objects if obj not in before]
    meshes = [obj for obj in created if obj.type == "MESH"]
    if len(meshes) != 1:
        for obj in created:
            bpy.data.objects.remove(obj)
        raise ImportFailed(f"{mesh.name}: expected one mesh in the GLB, found {len(meshes)}")
    (obj,) = meshes
    for other in created:
        if other is not obj:
            bpy.data.objects.remove(other)
    obj.parent = None
    obj.matrix_world = Matrix.Identity(4)
    collection = boxdream_collection(scene)
    for owner in list(obj.users_collection):
        owner.objects.unlink(obj)
    collection.objects.link(obj)
    obj.name = mesh.name
    obj.boxdream.source_job = job_id
    return obj


def world_bounds(obj: bpy.types.Object, matrix: Matrix) -> tuple[Vector, Vector]:
    """Minimum and maximum corner of `obj`'s bounding box under world matrix `matrix`."""
    corners = [matrix @ Vector(corner) for corner in obj.bound_box]
    low = Vector(tuple(min(c[axis] for c in corners) for axis in range(3)))
    high = Vector(tuple(max(c[axis] for c in corners) for axis in range(3)))
    return low, high


def place_on_cursor(obj: bpy.types.Object, server: Matrix, location: Vector, size: float) -> None:
    """Scale `obj` (under the server's transform) to `size` and stand it on `location`."""
    low, high = world_bounds(obj, server)
    largest = max(high - low)
    scale = size / largest if largest > 0 else 1.0
    bottom = Vector(((low.x + high.x) / 2, (low.y + high.y) / 2, low.z))
    obj.matrix_world = (
        Matrix.Translation(location) @ Matrix.Scale(scale, 4) @ Matrix.Translation(-bottom) @ server
    )


def apply_result(
    context: bpy.types.Context, scene: bpy.types.Scene, job: BoxDreamJob, result: Result
) -> list[bpy.types.Object]:
    """Import every mesh of `result` and place it as the job's kind asks; returns the objects.

    Compose: mesh i belongs to prompt box i (a background mesh, if any, comes after the
    boxes). Edit: a mesh belongs to the source object whose name it carries.
    """
    sources = {target.object_name: target.obj for target in job.targets}
    imported = []
    for mesh in result.meshes:
        obj = import_mesh(context, scene, mesh, job.job_id)
        server = matrix_of(mesh.transform)
        if job.kind == "generate":
            place_on_cursor(obj, server, Vector(job.location), job.size)
        elif job.kind == "edit" and sources.get(mesh.name) is not None:
            source = sources[mesh.name]
            obj.matrix_world = source.matrix_world.copy()
            obj.name = f"{source.name} edited"
            if source.name in context.view_layer.objects:
                source.hide_set(True)
            source.hide_render = True
        else:
            obj.matrix_world = server
        imported.append(obj)
    if job.kind == "compose":
        for obj, target in zip(imported, job.targets, strict=False):
            obj.boxdream.box = target.obj
    if scene == context.scene:
        for obj in context.view_layer.objects:
            obj.select_set(obj in imported)
        if imported:
            context.view_layer.objects.active = imported[0]
    return imported
