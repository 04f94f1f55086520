"""Build the distillation method a request names (`sds`, `vsd`, `sjc`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

from backend.guidance.distillation import DistillationMethod
from backend.guidance.prior import DiffusionPrior
from backend.guidance.sds import SDS, SDSConfig
from backend.guidance.sjc import SJC, SJCConfig
from backend.guidance.vsd import VSD, VSDConfig
from backend.pipelines.presets import DistillConfig
from protocol.errors import FieldError


def make_method(
    name: str, prior: DiffusionPrior, config: DistillConfig, prompt: str = ""
) -> DistillationMethod:
    """The method object for `name`, with the preset's guidance scale; `prompt` is the job's
    prompt (VSD's LoRA reads it, `backend.guidance.lora`).

    VSD attaches a LoRA to the prior's shared U-Net: close it when the job ends, best through
    `distillation_method`.
    """
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
    raise FieldError("method", f"method: {name!r} is not available (methods: sds, vsd, sjc)")


@contextmanager
def distillation_method(
    name: str, prior: DiffusionPrior, config: DistillConfig, prompt: str = ""
) -> Iterator[DistillationMethod]:
    """`make_method` for one job: a method that holds state on the shared prior (VSD's LoRA)
    is closed when the block ends, however it ends (cancel, error, done)."""
    method = make_method(name, prior, config, prompt)
    with ExitStack() as stack:
        if isinstance(method, AbstractContextManager):
            stack.enter_context(method)
        yield method
