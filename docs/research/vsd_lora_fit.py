"""How well VSD's LoRA learns fixed renders of the CPU start blob with `tiny-shapes`.

    PYTHONPATH=. python docs/research/vsd_lora_fit.py "PROMPT" THREADS

For each LoRA text input (prompt, empty) and learning rate, trains the LoRA on 4 fixed renders
(new t, noise and camera dropout each step, as VSD does) and prints, at a few step counts, the
LoRA loss on fixed draws relative to the pretrained model's with the same text (below 1: the
LoRA tracks the renders better than the prior did), and the norm of the particle gradient
w(t) (eps_cfg - eps_lora) relative to SDS's w(t) (eps_cfg - eps) on the same draws.
"""

from __future__ import annotations

import json
import sys

import torch

from backend.builtin_model.dataset import TRAINING_CAMERAS
from backend.field.grid_field import DenseGridField
from backend.guidance.camera_condition import camera_condition
from backend.guidance.distillation import Weighting, weight_of
from backend.guidance.vsd import VSD, VSDConfig, lora_loss
from backend.pipelines.presets import CPU_START
from backend.pipelines.runner import load_prior
from backend.render.background import sample_backgrounds
from backend.render.cameras import sample_cameras
from backend.render.renderer import RenderConfig, render
from backend.render.shading import ShadingConfig, sample_shading_modes

CHECKPOINTS = (0, 30, 100, 300)


def main() -> None:
    prompt = sys.argv[1]
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    prior = load_prior(None, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    field = DenseGridField(CPU_START)
    cameras = sample_cameras(4, TRAINING_CAMERAS, g)
    with torch.no_grad():
        out = render(
            field, cameras, 32, 32, sample_shading_modes(4, ShadingConfig(), g),
            sample_backgrounds(4, g), RenderConfig(32, 32), ShadingConfig(), g,
        )  # fmt: skip
        x0 = prior.encode_images(out.rgb)
    c2w = cameras.c2w
    draws = torch.Generator().manual_seed(123)
    fixed = [
        (torch.randint(0, 1000, (4,), generator=draws), torch.randn(x0.shape, generator=draws))
        for _ in range(8)
    ]
    cond = prior.encode_text([prompt] * 4)
    uncond = prior.encode_text([""] * 4)
    camera = camera_condition(c2w)
    for text in ("prompt", "empty"):
        for lr in (1e-4, 1e-3, 1e-2):
            config = VSDConfig(lora_lr=lr, lora_prompt=text == "prompt")
            row = {"text": text, "lr": lr, "fit": [], "grad_vs_sds": []}
            with VSD(prior, config, prompt) as vsd:
                base = 0.0
                with torch.no_grad():
                    t_text = vsd.lora.text.expand(4, -1, -1)
                    for t, noise in fixed:
                        x_t = prior.add_noise(x0, noise, t)
                        pred = prior.model_output(x_t, t, t_text, camera)
                        target = prior.training_target(x0, noise, t)
                        base += float(torch.nn.functional.mse_loss(pred, target))
                gen = torch.Generator().manual_seed(1)
                for step in range(max(CHECKPOINTS) + 1):
                    if step in CHECKPOINTS:
                        fit, vsd_norm, sds_norm = 0.0, 0.0, 0.0
                        with torch.no_grad():
                            for t, noise in fixed:
                                fit += float(lora_loss(prior, vsd.lora, x0, c2w, t, noise))
                                x_t = prior.add_noise(x0, noise, t)
                                eps_cfg = prior.guided_noise(x_t, t, cond, uncond, 7.5, camera)
                                eps_lora = vsd.lora.predict_noise(x_t, t, c2w)
                                w = weight_of(Weighting.SDS, prior.alphas_cumprod, t)
                                vsd_norm += float((w * (eps_cfg - eps_lora)).norm())
                                sds_norm += float((w * (eps_cfg - noise)).norm())
                        row["fit"].append(round(fit / base, 3))
                        row["grad_vs_sds"].append(round(vsd_norm / sds_norm, 3))
                    vsd.train_lora(x0, c2w, gen)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
