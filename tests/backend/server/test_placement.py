"""Placement on a Ray pool, without a cluster: which worker may run which job, and the
refusal at submit that names the model or the memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.server.broker import Needs
from backend.server.raypool import ActorInfo, RayPool, memory_estimate_gib, model_present
from protocol.limits import Limits
from tests.backend.server.doubles import scripted_pipeline

SD = "/models/sd-2-1"


def worker(name: str, models: set[str], memory_gib: float | None) -> ActorInfo:
    return ActorInfo(
        name=name,
        node_id=name,
        gpu=True,
        config="",
        handle=None,
        host=f"{name}-host (127.0.0.1)",
        models=frozenset(models),
        memory_gib=memory_gib,
        job=None,
    )


@pytest.fixture
def pool() -> RayPool:
    pool = RayPool(
        address="auto",
        pipeline=scripted_pipeline,
        model=None,
        models=["tiny-shapes", SD],
        limits=Limits(),
    )
    pool.add(
        worker("small", {"tiny-shapes", SD}, 8.0),
        worker("big", {"tiny-shapes", SD}, 80.0),
        worker("laptop", {"tiny-shapes"}, None),
    )
    return pool


def test_a_job_goes_only_to_workers_with_its_model_and_memory(pool: RayPool) -> None:
    sds = Needs(model=SD, method="sds", preset="standard")
    vsd = Needs(model=SD, method="vsd", preset="high")
    builtin = Needs(model="tiny-shapes", method="vsd", preset="high")
    assert [name for name in ("small", "big", "laptop") if pool.fits(name, sds)] == ["small", "big"]
    assert [name for name in ("small", "big", "laptop") if pool.fits(name, vsd)] == ["big"]
    assert all(pool.fits(name, builtin) for name in ("small", "big", "laptop"))
    assert not pool.fits("gone", builtin)
    assert pool.refusal(vsd) is None and pool.refusal(builtin) is None
    assert memory_estimate_gib(vsd) == 24 and memory_estimate_gib(builtin) == 1


def test_refusals_name_the_model_or_the_memory(pool: RayPool) -> None:
    missing = pool.refusal(Needs(model="/models/sdxl", method="sds", preset="preview"))
    assert missing is not None and missing.code == "unknown_model"
    assert missing.message.startswith("model: no host of the Ray pool has /models/sdxl")
    assert "3 workers on 3 hosts" in missing.message
    pool.add(worker("big", {"tiny-shapes"}, 80.0))
    memory = pool.refusal(Needs(model=SD, method="vsd", preset="high"))
    assert memory is not None and memory.code == "too_large"
    assert "vsd high with /models/sd-2-1 needs about 24 GiB" in memory.message
    assert "largest GPU with that model has 8 GiB" in memory.message


def test_a_host_has_the_built_in_model_its_folders_and_cached_hub_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "hub" / "models--org--model").mkdir(parents=True)
    assert model_present("tiny-shapes")
    assert model_present(str(tmp_path)) and not model_present(str(tmp_path / "absent"))
    assert model_present("org/model") and not model_present("org/other")
