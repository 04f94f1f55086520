"""Make the README picture: a scene built with the add-on's operators, rendered headless.

    boxdream serve --bind tcp://127.0.0.1:5555 &          # a backend with the built-in model
    python docs/render_addon_scene.py --server tcp://127.0.0.1:5555

Needs bpy (the `blender` extra). The add-on is enabled from this source tree as an
extension; two prompt boxes are filled with Generate Scene, one object is made with
Generate at the 3D cursor, and the scene is rendered with Workbench (textures shown) or
EEVEE to docs/images/addon_scene.png. Blender's user folders go to a temporary directory.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BOXES = (
    ("a red cube", (-1.5, 0.8, 0.5), (1.0, 1.0, 1.0), 20.0),
    ("a blue sphere", (1.5, 0.8, 0.5), (1.0, 1.0, 1.0), 0.0),
)
"""Prompt, centre, size and yaw (degrees) of each prompt box."""
GENERATE = ("a yellow cone", (0.0, -0.9, 0.0), 1.0)
"""Prompt, 3D cursor and size of the object made with Generate."""


def build_scene(package: str, server: str, preset: str) -> None:
    """Fill an empty scene through the add-on operators (background mode: they block)."""
    import bpy

    scene = bpy.context.scene
    for obj in list(scene.objects):
        bpy.data.objects.remove(obj)
    prefs = bpy.context.preferences.addons[package].preferences
    prefs.server_address = server
    prefs.timeout_s, prefs.retries = 10.0, 3
    settings = scene.boxdream
    settings.preset = preset
    for prompt, centre, size, yaw in BOXES:
        scene.cursor.location = centre
        bpy.ops.boxdream.add_prompt_box(prompt=prompt, size=size)
        bpy.context.active_object.rotation_euler.z = math.radians(yaw)
    bpy.ops.boxdream.generate_scene()
    prompt, cursor, size = GENERATE
    settings.prompt, settings.size = prompt, size
    scene.cursor.location = cursor
    bpy.ops.boxdream.generate()


def stage_and_render(output: Path, engine: str, width: int, height: int) -> None:
    """Ground, light and camera, then render the scene to `output`."""
    import bpy
    from mathutils import Vector

    scene = bpy.context.scene
    bpy.ops.mesh.primitive_plane_add(size=12.0, location=(0.0, 0.0, 0.0))
    ground = bpy.context.active_object
    material = bpy.data.materials.new("ground")
    material.diffuse_color = (0.55, 0.55, 0.58, 1.0)
    ground.data.materials.append(material)
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.rotation_euler = (math.radians(50.0), math.radians(10.0), math.radians(30.0))
    scene.collection.objects.link(sun)
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    camera.location = (1.8, -6.8, 3.4)
    direction = Vector((0.0, 0.1, 0.5)) - camera.location
    camera.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    camera.data.lens = 40.0
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = engine
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.filepath = str(output)
    scene.render.image_settings.file_format = "PNG"
    if engine == "BLENDER_WORKBENCH":
        shading = scene.display.shading
        shading.light, shading.color_type = "STUDIO", "TEXTURE"
        shading.show_shadows, shading.show_cavity = True, True
    scene.world = scene.world or bpy.data.worlds.new("world")
    scene.world.color = (0.8, 0.82, 0.86)
    output.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.render.render(write_still=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="tcp://127.0.0.1:5555", help="backend address")
    parser.add_argument("--preset", default="preview", help="quality preset of the jobs")
    parser.add_argument(
        "--output", type=Path, default=REPO_ROOT / "docs" / "images" / "addon_scene.png"
    )
    parser.add_argument(
        "--engine", default="BLENDER_WORKBENCH", choices=["BLENDER_WORKBENCH", "BLENDER_EEVEE"]
    )
    parser.add_argument("--size", default="960x540", help="WIDTHxHEIGHT in pixels")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="boxdream-render-") as user:
        os.environ["BLENDER_USER_RESOURCES"] = user  # before bpy is imported
        sys.path.insert(0, str(REPO_ROOT))
        from blender_addon.source_install import enable_from_source

        package = enable_from_source(Path(user) / "repo")
        build_scene(package, args.server, args.preset)
        stage_and_render(args.output.resolve(), args.engine, width, height)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
