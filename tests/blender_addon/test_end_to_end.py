"""Generate, Generate Scene and Edit Selected in background mode against a real backend
subprocess on loopback (built-in model, preview preset capped to a few steps): the results
are textured objects in the "BoxDream" collection, where they belong."""

from __future__ import annotations

import numpy as np
import pytest

from tests.blender_addon.conftest import needs_bpy

pytestmark = [needs_bpy, pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(3600)]

TOLERANCE = 1e-3
SCENARIO_TIMEOUT_S = 2400.0
"""A job takes about a minute on an idle 2-core machine, but 20 under heavy contention."""


def _check_textured(obj: dict) -> None:
    assert obj["type"] == "MESH" and obj["faces"] > 0
    assert obj["collections"] == ["BoxDream"]
    assert obj["images"], f"{obj['name']} has no image texture"
    image = obj["images"][0]
    assert image["base_color"] and image["packed"] and min(image["size"]) > 1


def _done(jobs: list[dict]) -> dict:
    (job,) = jobs
    assert job["state"] == "done", job
    return job


def test_generate_stands_on_the_cursor(run_scenario, backend_server: str) -> None:
    seen = run_scenario(
        "generate", address=backend_server, prompt="a red cube", timeout_s=SCENARIO_TIMEOUT_S
    )
    assert seen["outcome"]["outcome"] == ["FINISHED"], seen["outcome"]
    job = _done(seen["jobs"])
    assert job["total"] > 0 and job["preview"] is not None
    (obj,) = seen["objects"]
    _check_textured(obj)
    assert obj["source_job"] == job["job_id"]
    low, high = np.array(obj["low"]), np.array(obj["high"])
    assert max(high - low) == pytest.approx(1.5, abs=TOLERANCE)
    assert (low + high)[:2] / 2 == pytest.approx([2.0, -1.0], abs=TOLERANCE)
    assert low[2] == pytest.approx(0.25, abs=TOLERANCE)


def test_generate_scene_puts_each_object_in_its_box(run_scenario, backend_server: str) -> None:
    seen = run_scenario("compose", address=backend_server, timeout_s=SCENARIO_TIMEOUT_S)
    assert seen["outcome"]["outcome"] == ["FINISHED"], seen["outcome"]
    _done(seen["jobs"])
    assert len(seen["objects"]) == len(seen["boxes"]) == 2
    assert {obj["box"] for obj in seen["objects"]} == set(seen["boxes"])
    for obj in seen["objects"]:
        _check_textured(obj)
        half = np.array(seen["boxes"][obj["box"]]["half"])
        low, high = np.array(obj["in_box_low"]), np.array(obj["in_box_high"])
        assert (low >= -half - 1e-3).all() and (high <= half + 1e-3).all(), (obj, half)
        assert (high - low).max() > 0.1 * half.min(), "the object is only a speck"


def test_edit_selected_keeps_the_source_transform(run_scenario, backend_server: str) -> None:
    seen = run_scenario("edit", address=backend_server, timeout_s=SCENARIO_TIMEOUT_S)
    assert seen["outcome"]["outcome"] == ["FINISHED"], seen["outcome"]
    _done(seen["jobs"])
    (obj,) = seen["objects"]
    _check_textured(obj)
    assert obj["name"] == "Crate edited"
    assert np.array(obj["matrix"]) == pytest.approx(np.array(seen["source"]["matrix"]), abs=1e-6)
    assert seen["source"]["hidden"] and seen["source"]["hide_render"]
    assert np.array(obj["low"]) == pytest.approx(np.array(seen["source"]["low"]), abs=0.05)
    assert np.array(obj["high"]) == pytest.approx(np.array(seen["source"]["high"]), abs=0.05)


def test_job_survives_an_outage(run_scenario, backend_server: str) -> None:
    """Traffic held for 8 s mid-job: reported as waiting within seconds, then resumed."""
    hold_after, hold_for = 0.2, 8.0
    seen = run_scenario(
        "outage",
        address=backend_server,
        hold_after_s=hold_after,
        hold_for_s=hold_for,
        timeout_s=SCENARIO_TIMEOUT_S,
    )
    assert seen["outcome"]["outcome"] == ["FINISHED"], seen["outcome"]
    _done(seen["jobs"])
    (held_at,) = seen["held_at"]
    waiting = [t for t, kind in seen["notices"] if kind == "JobWaiting"]
    assert waiting, seen["notices"]
    assert held_at < waiting[0] < held_at + 6.0
    connected_again = [t for t, kind in seen["notices"] if kind == "Connected" and t > waiting[0]]
    assert connected_again and connected_again[0] >= held_at + hold_for - 0.5
