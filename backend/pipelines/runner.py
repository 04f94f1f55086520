"""The entry point the server's workers and the in-process CLI call: one request in, a stream
of events out. Loads (and caches) the prior, picks the preset, warns about prompts outside the
built-in model's vocabulary, and dispatches to the pipeline of the request's kind."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import torch

from backend import __version__
from backend.builtin_model import vocabulary
from backend.guidance.prior import BUILTIN_MODEL_NAME, DiffusionPrior
from backend.pipelines.generate import generate
from backend.pipelines.presets import METHODS, PRESETS, preset_config
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import ComposeRequest, EditRequest, GenerateRequest, Warning

JobRequest = GenerateRequest | ComposeRequest | EditRequest

_priors: dict[tuple[str, str], DiffusionPrior] = {}
_priors_lock = threading.Lock()


def resolve_device(device: str) -> torch.device:
    """ "auto" -> cuda when present else cpu; "cpu", "cuda", "cuda:1" as given (checked)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(
            f"device: {device!r} is not a torch device (auto, cpu, cuda, cuda:N)"
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked, but this machine has no CUDA device")
    return resolved


def load_prior(model: str | None, device: torch.device) -> DiffusionPrior:
    """The prior for `model` on `device`, loaded once per process."""
    key = (model or BUILTIN_MODEL_NAME, str(device))
    with _priors_lock:
        if key not in _priors:
            _priors[key] = DiffusionPrior.load(model, device=device)
        return _priors[key]


def prompts_of(request: JobRequest) -> list[str]:
    """Every prompt a request carries."""
    if isinstance(request, ComposeRequest):
        return [box.prompt for box in request.boxes] + (
            [request.scene_prompt] if request.scene_prompt else []
        )
    return [request.prompt]


def run_job(
    request: JobRequest,
    *,
    device: str,
    model: str | None,
    should_cancel: Callable[[], bool],
    max_steps: int | None = None,
) -> Iterator:
    """Run one job; yields Progress, Preview, Warning and finally Result events.

    `max_steps` caps the preset's optimisation steps: a development and test option (`serve
    --max-steps`) for end-to-end runs that check plumbing, placement and textures in seconds
    rather than result quality. Raises JobCancelled when `should_cancel()` turns true,
    ProtocolError for input that turns out bad only now (e.g. an unreadable mesh).
    """
    torch_device = resolve_device(device)
    model_name = request.model or model
    try:
        config = preset_config(request.preset, request.method, on_gpu=torch_device.type == "cuda")
    except ValueError as exc:
        field = str(exc).split(":", 1)[0]
        raise ProtocolError(ErrorCode.BAD_VALUE, field, str(exc)) from exc
    if max_steps is not None:
        config = replace(config, steps=max(1, min(config.steps, max_steps)))
    if model_name in (None, BUILTIN_MODEL_NAME):
        for prompt in prompts_of(request):
            warning = vocabulary.vocabulary_warning(prompt)
            if warning:
                yield Warning(message=f"{prompt!r}: {warning}")
    prior = load_prior(model_name, torch_device)
    if isinstance(request, GenerateRequest):
        yield from generate(request, prior, config, should_cancel)
    elif isinstance(request, ComposeRequest):
        from backend.pipelines.compose import compose

        yield from compose(request, prior, config, should_cancel)
    else:
        from backend.pipelines.edit import edit

        yield from edit(request, prior, config, should_cancel)


def server_info_fields(device: str) -> dict:
    """What a server advertises in its hello reply about models, methods and presets."""
    return {
        "server_version": __version__,
        "device": str(resolve_device(device)),
        "models": [BUILTIN_MODEL_NAME],
        "default_model": BUILTIN_MODEL_NAME,
        "methods": list(METHODS),
        "presets": {method: list(PRESETS) for method in METHODS},
        "vocabulary": {
            "shapes": list(vocabulary.SHAPES),
            "colours": list(vocabulary.COLOURS),
            "synonyms": dict(vocabulary.SYNONYMS),
        },
    }
