"""The entry point the server's workers and the in-process CLI call: one request in, a stream
of events out. Loads (and caches) the prior in the asked precision, picks the preset of the
model's family, refuses prompts outside the built-in model's world (and warns about unknown
words), and dispatches to the pipeline of the request's kind."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import torch

from backend import __version__
from backend.builtin_model import vocabulary
from backend.guidance.clip_model import BUILTIN_CLIP_NAME, ClipModel
from backend.guidance.distillation import Guide
from backend.guidance.precision import NonFiniteGradient, precision_name, resolve_precision
from backend.guidance.prior import BUILTIN_MODEL_NAME, DiffusionPrior, ModelFamily, model_family
from backend.pipelines.generate import generate
from backend.pipelines.presets import (
    METHODS,
    PRESETS,
    DistillConfig,
    check_names,
    preset_config,
)
from protocol.errors import ErrorCode, FieldError, ProtocolError
from protocol.messages import (
    ComposeRequest,
    GenerateRequest,
    JobRequest,
    JobWarning,
    check_in_vocabulary,
)

_priors: dict[tuple[str, str, torch.dtype], DiffusionPrior] = {}
_clips: dict[tuple[str, str, torch.dtype], ClipModel] = {}
_priors_lock = threading.Lock()


def resolve_device(device: str) -> torch.device:
    """ "auto" -> cuda when present else cpu; "cpu", "cuda", "cuda:1" as given (checked)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise FieldError(
            "device", f"device: {device!r} is not a torch device (auto, cpu, cuda, cuda:N)"
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise FieldError("device", f"device: {device!r} asked, but this machine has no CUDA device")
    return resolved


def load_prior(model: str | None, device: torch.device, precision: str = "auto") -> DiffusionPrior:
    """The prior for `model` on `device` in `precision`, loaded once per process."""
    dtype = resolve_precision(precision, device)
    key = (model or BUILTIN_MODEL_NAME, str(device), dtype)
    with _priors_lock:
        if key not in _priors:
            _priors[key] = DiffusionPrior.load(model, device=device, dtype=dtype)
        return _priors[key]


def load_clip(model: str | None, device: torch.device, precision: str = "auto") -> ClipModel:
    """The CLIP for `model` (None: tiny-clip) on `device` in `precision`, loaded once per
    process. "auto" keeps CLIP in fp32 on CPU: Dream Fields' gradient runs back through its
    image encoder into the render, and tiny-clip's guidance is 4 ms of an 80 ms step."""
    dtype = resolve_precision(precision, device, cpu_bf16=False)
    key = (model or BUILTIN_CLIP_NAME, str(device), dtype)
    with _priors_lock:
        if key not in _clips:
            _clips[key] = ClipModel.load(model, device=device, dtype=dtype)
        return _clips[key]


def load_guide(
    method: str, model: str | None, device: torch.device, precision: str = "auto"
) -> Guide:
    """What `method` is guided by: CLIP for "clip" (`model` names the CLIP), else the
    diffusion prior `model`."""
    if method == "clip":
        return load_clip(model, device, precision)
    return load_prior(model, device, precision)


def run_config(preset: str, method: str, guide: Guide) -> DistillConfig:
    """The preset of the guide's family; CLIP guidance renders at CLIP's input size."""
    config = preset_config(preset, method, guide.family)
    if isinstance(guide, ClipModel):
        config = replace(config, resolution=guide.image_size)
    return config


def prompts_of(request: JobRequest) -> list[str]:
    """Every prompt a request carries."""
    if isinstance(request, ComposeRequest):
        return [box.prompt for box in request.boxes] + (
            [request.scene_prompt] if request.scene_prompt else []
        )
    return [request.prompt]


def _protocol_error(exc: FieldError) -> ProtocolError:
    """A bad value found while running (a preset, the model folder) as the protocol's error."""
    return ProtocolError(ErrorCode.BAD_VALUE, exc.field, str(exc))


def run_job(
    request: JobRequest,
    *,
    device: str,
    model: str | None,
    should_cancel: Callable[[], bool],
    max_steps: int | None = None,
    precision: str = "auto",
) -> Iterator:
    """Run one job; yields Progress, Preview, JobWarning and finally Result events.

    `precision` is the server's choice for requests that ask for "auto". `max_steps` caps the
    preset's optimisation steps: a development and test option (`serve --max-steps`) for
    end-to-end runs that check plumbing, placement and textures in seconds rather than result
    quality (it caps stage 2's steps too). Raises JobCancelled when `should_cancel()` turns
    true, ProtocolError for input that turns out bad only now (e.g. an unreadable mesh, a
    prompt outside the built-in model's world) and for a run whose gradients stop being
    finite (field "precision").
    """
    torch_device = resolve_device(device)
    clip = request.method == "clip"
    # CLIP guidance takes the CLIP the request names (tiny-clip by default), never the
    # server's default diffusion model.
    model_name = request.model if clip else request.model or model
    try:
        check_names(request.preset, request.method)
        if clip and not isinstance(request, GenerateRequest):
            raise FieldError("method", "method: clip (Dream Fields) runs generate jobs only")
    except FieldError as exc:
        raise _protocol_error(exc) from exc
    if model_name in (None, BUILTIN_MODEL_NAME, BUILTIN_CLIP_NAME):
        check_in_vocabulary(request, vocabulary_fields(), BUILTIN_MODEL_NAME)
        for prompt in prompts_of(request):
            warning = vocabulary.vocabulary_warning(prompt)
            if warning:
                yield JobWarning(message=f"{prompt!r}: {warning}")
    chosen = request.precision if request.precision != "auto" else precision
    try:
        prior = load_guide(request.method, model_name, torch_device, chosen)
    except FieldError as exc:
        raise _protocol_error(exc) from exc
    config = run_config(request.preset, request.method, prior)
    if max_steps is not None:
        config = replace(config, steps=max(1, min(config.steps, max_steps)))
        if config.refine is not None:
            refine_steps = max(1, min(config.refine.steps, max_steps))
            config = replace(config, refine=replace(config.refine, steps=refine_steps))
    try:
        if isinstance(request, GenerateRequest):
            yield from generate(
                request, prior, replace(config, particles=request.particles), should_cancel
            )
        elif isinstance(request, ComposeRequest):
            from backend.pipelines.compose import compose

            yield from compose(request, prior, config, should_cancel)
        else:
            from backend.pipelines.edit import edit

            yield from edit(request, prior, config, should_cancel)
    except NonFiniteGradient as exc:
        raise ProtocolError(ErrorCode.NOT_FINITE, "precision", str(exc)) from exc


def vocabulary_fields() -> dict:
    """What the built-in model knows, as a hello reply's `vocabulary`."""
    return {
        "shapes": list(vocabulary.SHAPES),
        "colours": list(vocabulary.COLOURS),
        "synonyms": dict(vocabulary.SYNONYMS),
    }


def model_settings(model: str | None, device: torch.device, precision: str) -> dict:
    """A model's family, the precision its prior would run in on `device`, and the values of
    every preset in force for it (from its configs alone: nothing is loaded)."""
    family = model_family(model)
    dtype = resolve_precision(precision, device)

    def values(preset: str, method: str) -> dict:
        config = preset_config(preset, method, family)
        return {
            "steps": config.steps,
            "views": config.views,
            "resolution": config.resolution,
            "guidance_scale": config.guidance_scale,
            "grid": config.grid.resolution,
        }

    return {
        "model": model or BUILTIN_MODEL_NAME,
        "family": str(family),
        "precision": precision_name(dtype),
        "presets": {m: {p: values(p, m) for p in PRESETS} for m in METHODS},
    }


def server_info_fields(device: str, model: str | None = None, precision: str = "auto") -> dict:
    """What a server advertises in its hello reply about models, methods and presets: the
    default model (`model`, or the built-in one), what it knows when it is the built-in
    model, and its family, precision and preset values (`model_settings`)."""
    torch_device = resolve_device(device)
    default = model or BUILTIN_MODEL_NAME
    try:
        settings = model_settings(model, torch_device, precision)
    except FieldError as exc:
        raise FieldError(exc.field, f"--model {default}: {exc}") from exc
    builtin = settings["family"] == str(ModelFamily.BUILTIN) and default == BUILTIN_MODEL_NAME
    return {
        "server_version": __version__,
        "device": str(torch_device),
        "models": list(dict.fromkeys([BUILTIN_MODEL_NAME, default])),
        "default_model": default,
        "methods": list(METHODS),
        "presets": {method: list(PRESETS) for method in METHODS},
        "vocabulary": vocabulary_fields() if builtin else None,
        "model_settings": settings,
    }
