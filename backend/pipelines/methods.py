"""Build the guidance method a request names (`sds`, `vsd`, `sjc`, `clip`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

from backend.guidance.clip_model import ClipModel
from backend.guidance.distillation import DistillationMethod, Guide
from backend.guidance.dream_fields import DreamFields
from backend.guidance.prior import DiffusionPrior
from backend.guidance.sds import SDS, SDSConfig
from backend.guidance.sjc import SJC, SJCConfig
from backend.guidance.vsd import VSD, VSDConfig
from backend.pipelines.catalogue import METHODS
from backend.pipelines.presets import DistillConfig
from protocol.errors import FieldError


def make_method(
    name: str, prior: Guide, config: DistillConfig, prompt: str = ""
) -> DistillationMethod:
    """The method object for `name`, with the preset's guidance scale; `prompt` is the job's
    prompt (VSD's LoRA and Dream Fields read it). `prior` is a `ClipModel` for "clip", a
    `DiffusionPrior` for the others.

    VSD attaches a LoRA to the prior's shared U-Net: close it when the job ends, best through
    `distillation_method`.
    """
    if name == "clip":
        if not isinstance(prior, ClipModel):
            raise FieldError(
                "method", "method: clip guides with a CLIP model, not a diffusion prior"
            )
        # guidance_scale is per rendered pixel, like the loop's regularisers.
        return DreamFields(prior, prompt, config.guidance_scale * config.resolution**2)
    if not isinstance(prior, DiffusionPrior):
        raise FieldError("method", f"method: {name} needs a diffusion prior, not a CLIP model")
    if name == "sds":
        return SDS(
            prior,
            SDSConfig(guidance_scale=config.guidance_scale, interval=config.guidance_interval),
        )
    if name == "vsd":
        vsd = VSDConfig(guidance_scale=config.guidance_scale, interval=config.guidance_interval)
        return VSD(prior, vsd, prompt)
    if name == "sjc":
        return SJC(prior, SJCConfig(guidance_scale=config.guidance_scale))
    raise FieldError("method", f"method: {name!r} is not available (methods: {', '.join(METHODS)})")


@contextmanager
def distillation_method(
    name: str, prior: Guide, config: DistillConfig, prompt: str = ""
) -> Iterator[DistillationMethod]:
    """`make_method` for one job: a method that holds state on the shared prior (VSD's LoRA)
    is closed when the block ends, however it ends (cancel, error, done)."""
    method = make_method(name, prior, config, prompt)
    with ExitStack() as stack:
        if isinstance(method, AbstractContextManager):
            stack.enter_context(method)
        yield method
