"""Make the README's pictures with the built-in model on CPU:

    python docs/make_readme_pictures.py            # preview results and turntables
    python docs/make_readme_pictures.py --refine   # stage 2 off / on at the standard preset

For each prompt: generate with the preview preset (seed 0), export the GLB, render the exported
textured mesh (what Blender receives) from four sides, and write a turntable GIF of the
optimised field. With --refine: for each surface-goal prompt, one stage 1 of the standard
preset (seed 0), exported as it is (stage 2 off) and after stage 2 (on), both rendered from four
sides with flat shading (each face lit by its own normal, so bumps show), their neighbour angles
printed; and a turntable of the refined torus's export. The built-in model's sample grid
(docs/images/tiny-shapes-grid.png) is written by its training script
(`python -m backend.builtin_model.train ... --grid`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from backend.export.export_field import export_field, to_glb
from backend.export.textured_mesh import TexturedMesh
from backend.field.grid_field import DenseGridField
from backend.geometry.surface_angles import SurfaceAngles, surface_angles
from backend.guidance.prior import ModelFamily
from backend.pipelines.generate import optimise_prompt_field, optimise_prompt_particles
from backend.pipelines.presets import DistillConfig, preset_config
from backend.pipelines.refine import export_optimised
from backend.pipelines.runner import load_prior
from backend.render.mesh_texture_renderer import TexturedSurface, render_textured
from backend.render.preview import PREVIEW_BACKGROUND, fixed_cameras, save_turntable, to_strip
from backend.render.shading import ShadingMode
from protocol.messages import GenerateRequest

OUT = Path(__file__).parent / "images"
PROMPTS = ["a red cube", "a blue sphere", "a yellow cone", "a green torus", "a purple cylinder"]
REFINE_PROMPTS = ["a blue sphere", "a yellow cone", "a green torus", "a red cube"]


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


def finished(loop):
    """The value a pipeline generator returns, its events dropped."""
    while True:
        try:
            next(loop)
        except StopIteration as done:
            return done.value


def stage_1_field(prompt: str, prior, config: DistillConfig) -> DenseGridField:
    """Stage 1 of the preset for `prompt` (seed 0): the coarse field."""
    request = GenerateRequest(prompt=prompt)
    return finished(optimise_prompt_field(request, prior, replace(config, refine=None), _never))


def _never() -> bool:
    return False


def refine_comparison(
    prompt: str, prior, field: DenseGridField, config: DistillConfig
) -> tuple[TexturedMesh, TexturedMesh, SurfaceAngles, SurfaceAngles]:
    """The stage-1 field exported as it is (stage 2 off: the face budget stage 1 exports at)
    and after stage 2 (on), with their neighbour angles."""
    off = export_field(field, config.export, DistillConfig().face_budget, config.texture_size)
    request = GenerateRequest(prompt=prompt)
    one = replace(config, particles=1)
    (surface,) = finished(optimise_prompt_particles(request, prior, one, _never, stage_1=[field]))
    on = export_optimised(surface, config)
    return off, on, surface_angles(off.vertices, off.faces), surface_angles(on.vertices, on.faces)


def refine_pictures(prior, fields: dict[str, DenseGridField] | None = None) -> None:
    """Stage 2 off / on for the surface-goal prompts (`fields`: stage-1 fields already made
    for some of them) -> docs/images/refine_off_on.png and a_green_torus_refined.gif."""
    config = preset_config("standard", "sds", ModelFamily.BUILTIN)
    rows = []
    for prompt in REFINE_PROMPTS:
        field = (fields or {}).get(prompt) or stage_1_field(prompt, prior, config)
        start = time.perf_counter()
        off, on, before, after = refine_comparison(prompt, prior, field, config)
        print(
            f"{prompt}: off {before.median_deg:.2f} / {before.p90_deg:.2f} deg "
            f"({len(off.faces)} faces), on {after.median_deg:.2f} / {after.p90_deg:.2f} deg "
            f"({len(on.faces)} faces); stage 2 + export {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        rows.append(np.concatenate([mesh_views(off, 96), mesh_views(on, 96)], axis=1))
        if prompt == "a green torus":
            mesh_turntable(on, OUT / "a_green_torus_refined.gif")
    Image.fromarray(np.concatenate(rows, axis=0)).save(OUT / "refine_off_on.png", optimize=True)


def mesh_turntable(mesh: TexturedMesh, path: Path, frames: int = 24, size: int = 128) -> None:
    """An animated GIF of the exported textured mesh turning once (flat shading)."""
    azimuths = [360.0 * i / frames - 180.0 for i in range(frames)]
    images = _render_mesh(mesh, fixed_cameras(azimuths, elevation_deg=25.0), size)
    arr = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    pil_frames = [Image.fromarray(a) for a in arr]
    pil_frames[0].save(path, save_all=True, append_images=pil_frames[1:], duration=80, loop=0)


def mesh_views(mesh: TexturedMesh, size: int = 128) -> np.ndarray:
    """Four lit renders (front, side, back, three-quarter top) of the exported textured mesh,
    side by side: uint8 [size, 4 * size, 3]."""
    cameras = fixed_cameras([0.0, 90.0, 180.0, 45.0], elevation_deg=25.0)
    return to_strip(_render_mesh(mesh, cameras, size))


def _render_mesh(mesh: TexturedMesh, cameras, size: int) -> torch.Tensor:
    """Lit renders of the exported textured mesh (flat shading) -> [B, 3, size, size]."""
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
    b = len(cameras)
    out = render_textured(
        surface,
        [texture],
        cameras,
        size,
        size,
        torch.full((b,), int(ShadingMode.LIT)),
        torch.full((b, 3), PREVIEW_BACKGROUND),
    )
    return out.rgb.clamp(0, 1)


def main() -> int:
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    prior = load_prior(None, torch.device("cpu"))
    if "--refine" in sys.argv[1:]:
        refine_pictures(prior)
        return 0
    rows = []
    for prompt in PROMPTS:
        strip, seconds = run(prompt, prior)
        print(f"{prompt}: {seconds:.0f} s", flush=True)
        rows.append(strip)
    Image.fromarray(np.concatenate(rows, axis=0)).save(OUT / "results.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
