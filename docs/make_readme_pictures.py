"""Make the README's pictures with the built-in model on CPU:

    python docs/make_readme_pictures.py

For each prompt: generate with the preview preset (seed 0), export the GLB, render the exported
textured mesh (what Blender receives) from four sides, and write a turntable GIF of the
optimised field. The built-in model's sample grid (docs/images/tiny-shapes-grid.png) is written
by its training script (`python -m backend.builtin_model.train ... --grid`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from backend.export.export_field import export_field, to_glb
from backend.export.textured_mesh import TexturedMesh
from backend.guidance.prior import ModelFamily
from backend.pipelines.generate import optimise_prompt_field
from backend.pipelines.presets import preset_config
from backend.pipelines.runner import load_prior
from backend.render.mesh_texture_renderer import TexturedSurface, render_textured
from backend.render.preview import PREVIEW_BACKGROUND, fixed_cameras, save_turntable, to_strip
from backend.render.shading import ShadingMode
from protocol.messages import GenerateRequest

OUT = Path(__file__).parent / "images"
PROMPTS = ["a red cube", "a blue sphere", "a yellow cone", "a green torus", "a purple cylinder"]


def run(prompt: str, prior, method: str = "sds") -> tuple[np.ndarray, float]:
    config = preset_config("preview", method, ModelFamily.BUILTIN)
    start = time.perf_counter()
    loop = optimise_prompt_field(
        GenerateRequest(prompt=prompt, method=method), prior, config, lambda: False
    )
    while True:
        try:
            next(loop)
        except StopIteration as done:
            field = done.value
            break
    mesh = export_field(field, config.export, config.face_budget, config.texture_size)
    seconds = time.perf_counter() - start
    slug = prompt.replace(" ", "_")
    (OUT / f"{slug}.glb").write_bytes(to_glb(mesh, slug))
    save_turntable(field, str(OUT / f"{slug}_turntable.gif"))
    return mesh_views(mesh), seconds


def mesh_views(mesh: TexturedMesh, size: int = 128) -> np.ndarray:
    """Four lit renders (front, side, back, three-quarter top) of the exported textured mesh,
    side by side: uint8 [size, 4 * size, 3]."""
    surface = TexturedSurface.from_parts(
        [
            (
                torch.from_numpy(mesh.vertices),
                torch.from_numpy(mesh.faces),
                torch.from_numpy(mesh.uvs),
            )
        ]
    )
    texture = torch.from_numpy(mesh.texture).permute(2, 0, 1).float() / 255.0
    cameras = fixed_cameras([0.0, 90.0, 180.0, 45.0], elevation_deg=25.0)
    out = render_textured(
        surface,
        [texture],
        cameras,
        size,
        size,
        torch.full((4,), int(ShadingMode.LIT)),
        torch.full((4, 3), PREVIEW_BACKGROUND),
    )
    return to_strip(out.rgb.clamp(0, 1))


def main() -> int:
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    prior = load_prior(None, torch.device("cpu"))
    rows = []
    for prompt in PROMPTS:
        strip, seconds = run(prompt, prior)
        print(f"{prompt}: {seconds:.0f} s", flush=True)
        rows.append(strip)
    Image.fromarray(np.concatenate(rows, axis=0)).save(OUT / "results.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
