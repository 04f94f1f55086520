"""One generate with the built-in model and preset overrides; prints one JSON line.

    PYTHONPATH=. python docs/research/vsd_experiment.py METHOD "PROMPT" SEED THREADS '{...}'

Overrides (all optional): guidance_scale, views, steps, lr, lr_end (the run); interval (the CPU
guidance interval on the run and, for VSD, its weight), sds_reg (CPU SDS's regularisers), tv,
sparsity; blob_density, blob_radius (start blob); coarse_samples, fine_samples (per ray);
precision (the request's); particles; for VSD: lora_lr, camera_dropout,
lora_rank, lora_prompt, t_max_end, anneal_until (None for t_max_end: no annealing); preset.
Prints the judged colour and shape of each mesh, its fill and largest extent, and for every
method the particle-gradient norm per fifth of the run; for VSD also the LoRA loss per fifth
and the ratio of the LoRA's loss to the pretrained model's on the same noisy renders (below 1:
eps_lora tracks the renders better than the prior does).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from backend.export.glb import read_glb
from backend.guidance.distillation import TimestepSchedule
from backend.guidance.vsd import VSD, lora_loss
from backend.pipelines import methods as methods_module
from backend.pipelines import presets, runner
from protocol.messages import GenerateRequest
from tests.judging import nearest_colour, nearest_shape, surface_colour


def _run_overrides(config, ov: dict):
    kw = {k: ov[k] for k in ("guidance_scale", "views", "steps", "lr", "lr_end") if k in ov}
    if "interval" in ov:
        kw["guidance_interval"] = presets.CPU_GUIDANCE_INTERVAL if ov["interval"] else None
    reg = config.regularisers
    if "sds_reg" in ov:
        reg = presets.CPU_INTERVAL_REGULARISERS if ov["sds_reg"] else presets.CPU_REGULARISERS
    if "tv" in ov:
        reg = replace(reg, total_variation=ov["tv"])
    if "sparsity" in ov:
        reg = replace(reg, sparsity=ov["sparsity"])
    grid = config.grid
    if "blob_density" in ov:
        grid = replace(grid, blob_density=ov["blob_density"])
    if "blob_radius" in ov:
        grid = replace(grid, blob_radius=ov["blob_radius"])
    render = replace(
        config.render,
        **{k: ov[k] for k in ("coarse_samples", "fine_samples") if k in ov},
    )
    return replace(config, regularisers=reg, grid=grid, render=render, **kw)


def _fifths(x: list[float]) -> list[float]:
    n = len(x)
    return (
        [round(float(np.mean(x[i * n // 5 : (i + 1) * n // 5])), 4) for i in range(5)] if n else []
    )


def main() -> None:
    method, prompt, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    ov = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    stats: dict[str, list[float]] = {"lora": [], "gnorm": [], "track": []}

    real_preset = runner.preset_config

    def preset(p, m, family):
        return _run_overrides(real_preset(p, m, family), ov)

    runner.preset_config = preset
    real_make = methods_module.make_method

    def make(name, prior, config, prompt_text=""):
        m = real_make(name, prior, config, prompt_text)
        if name == "vsd":
            kw = {
                k: ov[k]
                for k in ("lora_lr", "camera_dropout", "lora_rank", "lora_prompt")
                if k in ov
            }
            if "t_max_end" in ov or "anneal_until" in ov:
                kw["timesteps"] = TimestepSchedule(
                    t_max_end=ov.get("t_max_end", 0.5), anneal_until=ov.get("anneal_until", 0.2)
                )
            m.close()
            m = VSD(prior, replace(m.config, **kw), prompt_text)
        real_step = m.step

        def step(x0, guided, c2w, progress, generator):
            out = real_step(x0, guided, c2w, progress, generator)
            stats["gnorm"].append(out.grad_norm / x0.shape[0] ** 0.5)
            if isinstance(m, VSD):
                stats["lora"].append(m.last_lora_loss)
                if len(stats["gnorm"]) % 10 == 1:
                    g = torch.Generator().manual_seed(len(stats["gnorm"]))
                    t = torch.randint(0, prior.num_train_timesteps, (x0.shape[0],), generator=g)
                    noise = torch.randn(x0.shape, generator=g)
                    with torch.no_grad():
                        fit = float(lora_loss(prior, m.lora, x0, c2w, t, noise))
                        x_t = prior.add_noise(x0.detach(), noise, t)
                        text = m.lora.text.expand(x0.shape[0], -1, -1)
                        from backend.guidance.camera_condition import camera_condition

                        base = prior.model_output(x_t, t, text, camera_condition(c2w))
                        ref = float(
                            torch.nn.functional.mse_loss(
                                base, prior.training_target(x0.detach(), noise, t)
                            )
                        )
                    stats["track"].append(fit / max(ref, 1e-12))
            return out

        m.step = step
        return m

    methods_module.make_method = make
    t0 = time.time()
    request = GenerateRequest(
        prompt=prompt,
        method=method,
        seed=seed,
        preset=ov.get("preset", "preview"),
        particles=ov.get("particles", 1),
        precision=ov.get("precision", "auto"),
    )
    events = list(runner.run_job(request, device="cpu", model=None, should_cancel=lambda: False))
    meshes = []
    for out in events[-1].meshes:
        (mesh,) = read_glb(out.glb)
        rgb = surface_colour(mesh)
        shape, feats = nearest_shape(mesh.vertices, mesh.faces)
        extent = float((mesh.vertices.max(0) - mesh.vertices.min(0)).max())
        meshes.append(
            {
                "colour": nearest_colour(rgb),
                "rgb": [round(float(c), 2) for c in rgb],
                "shape": shape,
                "features": [round(float(f), 3) for f in feats],
                "extent": round(extent, 3),
                "faces": len(mesh.faces),
            }
        )
    record = {
        "method": method,
        "prompt": prompt,
        "seed": seed,
        "ov": ov,
        **meshes[0],
        "s": round(time.time() - t0),
        "gnorm_fifths": _fifths(stats["gnorm"]),
        "lora_fifths": _fifths(stats["lora"]),
        "track_fifths": _fifths(stats["track"]),
    }
    if len(meshes) > 1:
        record["particles"] = meshes
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
