"""Mixed precision, the way mixed-precision training does it.

Only the frozen prior (U-Net, text encoder, VAE) runs in reduced precision. What crosses the
prior's boundary comes back in fp32 (latents, noise predictions), so the field, the renders, the
distillation loss and every optimiser state stay fp32. Trainable adapters (VSD's LoRA) keep fp32
master weights; their loss is scaled (fp16 only) so that small gradients survive the backward
pass through fp16 activations.

Nothing is silently repaired: a step whose gradient holds a NaN or an inf is skipped and
counted, and past a small number of such steps the job fails with `NonFiniteGradient`, naming
the method, the step and the precision.

fp16: max 65,504, smallest normal 6.1e-5 (Adam's eps of 1e-8 is 0 in it); bf16 has fp32's
range with 8 bits of mantissa.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch

from protocol.errors import FieldError
from protocol.messages import PRECISIONS

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
"""The explicit precision names (`PRECISIONS` without "auto") and their torch dtypes."""

LOSS_SCALE_START = 2.0**10
"""First loss scale of a trainable adapter under fp16 (torch's default 2^16 overflows the first
few dozen steps of a LoRA on a U-Net; the scale still grows when the gradients allow)."""


class NonFiniteGradient(RuntimeError):
    """Too many optimisation steps had a gradient with NaN or inf."""


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), so that a network in
    bf16 runs faster than in fp32 instead of emulating it."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(precision: str, device: torch.device, cpu_bf16: bool = True) -> torch.dtype:
    """The prior's dtype for a precision name on `device`.

    "auto": bf16 on a CUDA device that supports it, else fp16 on CUDA; on CPU bf16 where the
    CPU has it natively (`cpu_has_bf16`; the built-in prior's guidance 0.64-0.77x,
    docs/research/cpu-render-speed.md) and `cpu_bf16`, else fp32; fp32 on any other device.
    Raises ValueError naming the field for an unknown name.
    """
    if precision not in PRECISIONS:
        raise FieldError(
            "precision", f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}"
        )
    if precision != "auto":
        return DTYPES[precision]
    if device.type == "cpu":
        return torch.bfloat16 if cpu_bf16 and cpu_has_bf16() else torch.float32
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(dtype: torch.dtype) -> str:
    """ "fp32", "fp16" or "bf16" for a dtype of `DTYPES`."""
    for name, known in DTYPES.items():
        if known == dtype:
            return name
    raise FieldError("precision", f"precision: {dtype} is not one of {', '.join(DTYPES)}")


def synchronised_clock(device: torch.device) -> float:
    """perf_counter after the device's queued work is done (CUDA runs asynchronously), so that
    timings of GPU work are true."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def all_finite(tensors: Iterable[torch.Tensor | None]) -> bool:
    """True when no tensor holds a NaN or an inf (None entries, missing gradients, and empty
    tensors skipped). One min/max reduction per tensor: a NaN propagates to both, an inf is
    an extreme (a 64^3 x 4 grid's gradient on 2 CPU threads: 0.09 ms against 1.0 ms for
    `isfinite().all()`, which writes a mask of the whole tensor; 2026-12-07)."""
    extremes = [
        torch.stack(torch.aminmax(t)).double() for t in tensors if t is not None and t.numel()
    ]
    return bool(torch.isfinite(torch.cat(extremes)).all()) if extremes else True


class NonFiniteGuard:
    """Counts optimisation steps with non-finite gradients and fails past `limit` of them.

    `what` names the optimisation in the error ("method sds", "vsd's LoRA"); `precision` is the
    prior's precision name. `consecutive=True` counts only an unbroken run of bad steps (loss
    scaling skips a few steps by design while it finds its scale).
    """

    def __init__(self, what: str, precision: str, limit: int, consecutive: bool = False) -> None:
        self.what = what
        self.precision = precision
        self.limit = limit
        self.consecutive = consecutive
        self.count = 0
        """Bad steps so far (in the current run of them when `consecutive`)."""
        self.total = 0
        """Bad steps over the whole optimisation."""

    def check(self, finite: bool, step: int) -> bool:
        """Record step `step` (1-based); True when its update may be applied. Raises
        `NonFiniteGradient` once more than `limit` steps were bad."""
        if finite:
            if self.consecutive:
                self.count = 0
            return True
        self.count += 1
        self.total += 1
        if self.count > self.limit:
            run = "in a row " if self.consecutive else ""
            raise NonFiniteGradient(
                f"precision: {self.what} had non-finite gradients at {self.count} steps {run}"
                f"(the latest at step {step}) under {self.precision}; the limit is {self.limit}. "
                "Try --precision fp32 (or bf16 on a GPU that has it)"
            )
        return False


class ScaledOptimiser:
    """An optimiser over fp32 trainable weights whose loss runs through reduced-precision
    activations: the loss is scaled under fp16 (`torch.amp.GradScaler`, dynamic), unscaled
    before the update, and a step with a non-finite gradient is skipped and reported to a
    `NonFiniteGuard` (consecutive: a scale that is too high costs a few skipped steps)."""

    def __init__(
        self,
        optimiser: torch.optim.Optimizer,
        prior_dtype: torch.dtype,
        device: torch.device,
        guard: NonFiniteGuard,
    ) -> None:
        self.optimiser = optimiser
        self.guard = guard
        self.scaler = torch.amp.GradScaler(
            device.type, init_scale=LOSS_SCALE_START, enabled=prior_dtype == torch.float16
        )
        self.steps = 0

    def step(self, loss: torch.Tensor) -> bool:
        """Backpropagate fp32 `loss` and update; False when the step was skipped."""
        self.steps += 1
        self.optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimiser)
        grads = [p.grad for group in self.optimiser.param_groups for p in group["params"]]
        finite = all_finite(grads)
        if finite:
            self.scaler.step(self.optimiser)
        self.scaler.update()  # under fp16, a non-finite gradient halves the scale
        return self.guard.check(finite, self.steps)
