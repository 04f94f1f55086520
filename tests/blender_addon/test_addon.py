"""The add-on inside bpy (each test in its own subprocess): enabling, prompt boxes, panels,
errors without a server, online access, the local backend, and the built zip installed."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from blender_addon import build
from tests.blender_addon.conftest import free_port, needs_bpy

pytestmark = [needs_bpy, pytest.mark.blender]


def test_extension_enables_with_addon_utils(run_scenario) -> None:
    seen = run_scenario("enabled")
    assert seen["module"] == "bl_ext.boxdream_test.boxdream"
    assert {
        "generate",
        "add_prompt_box",
        "generate_scene",
        "edit_selected",
        "cancel",
        "connect",
        "refetch",
        "local_backend",
    } <= set(seen["operators"])
    assert {"BOXDREAM_PT_main", "BOXDREAM_PT_jobs", "BOXDREAM_PT_boxes"} <= set(seen["panels"])
    assert seen["scene_settings"] and seen["prefs_address"] == "tcp://127.0.0.1:5555"
    assert seen["user_dir"].startswith(seen["user_resources"])
    assert seen["background"] and seen["gltf_enabled"]


def test_prompt_boxes_added_by_operator(run_scenario) -> None:
    seen = run_scenario("prompt_boxes")
    first, second = seen["boxes"]
    assert first["is_box"] and first["display"] == "CUBE" and first["prompt"] == "a red cube"
    assert first["protocol"]["centre"] == pytest.approx([1.0, 2.0, 0.5])
    assert first["protocol"]["size"] == pytest.approx([1.0, 2.0, 0.5])
    assert first["protocol"]["yaw_deg"] == pytest.approx(0.0, abs=1e-4)
    assert second["protocol"]["centre"] == pytest.approx([-2.0, 0.0, 1.0])
    assert second["protocol"]["size"] == pytest.approx([1.0, 1.0, 1.0])
    assert second["protocol"]["yaw_deg"] == pytest.approx(30.0, abs=1e-4)
    assert seen["selected"] == [seen["second"]]


def test_panels_draw_with_rna_checked_layout(run_scenario) -> None:
    seen = run_scenario("panels")
    assert "boxdream.connect" in seen["disconnected"]["operators"]
    assert any(label.startswith("Disconnected") for label in seen["disconnected"]["labels"])
    running = seen["connected"]["running"]
    labels = " | ".join(running["labels"])
    assert "Server 0.1.0, device cpu" in labels and "Model: tiny-shapes" in labels
    assert "Shapes: cube, sphere" in labels and "Colours: red, blue" in labels
    assert "coarse 30/150  ETA 1 min 05 s" in labels
    assert {"boxdream.generate", "boxdream.add_prompt_box", "boxdream.generate_scene"} <= set(
        running["operators"]
    )
    assert {"boxdream.edit_selected", "boxdream.cancel"} <= set(running["operators"])
    assert "template_icon" in running["calls"]
    failed = seen["connected"]["failed"]
    assert "boxdream.cancel" not in failed["operators"]
    assert any("tiny-shapes does not understand" in label for label in failed["labels"])
    assert {"server_address", "use_curve", "server_public_key", "client_secret_key"} <= set(
        seen["preferences"]["props"]
    )
    assert {"timeout_s", "local_backend_command"} <= set(seen["preferences"]["props"])
    assert "boxdream.local_backend" in seen["preferences"]["operators"]
    assert seen["box_rows"] == ["Prompt Box"]
    assert [row.split()[1] for row in seen["job_rows"] if row.startswith("job")] == [
        "running",
        "queued",
        "waiting",
        "done",
        "failed",
    ]


def test_model_precision_and_particles_reach_the_request(run_scenario) -> None:
    seen = run_scenario("request_fields")
    assert seen["items"] == ["__server_default__", "tiny-shapes", "sd-2.1-base"]
    assert seen["default"] == [None, "auto"]
    assert seen["chosen"] == ["tiny-shapes", "fp16", 3]


def test_dead_server_is_a_clear_error_within_seconds(run_scenario) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    seen = run_scenario("dead_server", address=address, timeout_s=60)
    generate = seen["generate"]
    assert generate["outcome"] is None
    assert "not reachable" in generate["error"] and address in generate["error"]
    assert generate["seconds"] < 10
    assert seen["jobs"][0]["state"] == "failed"
    assert "no answer from the BoxDream server" in seen["jobs"][0]["message"]
    assert seen["connect"]["error"] and seen["connect"]["seconds"] < 10


def test_remote_server_refused_while_online_access_is_off(run_scenario) -> None:
    seen = run_scenario("online_access_blocked", address="tcp://192.0.2.7:5555")
    assert seen["online_access"] is False
    assert "online access is off" in seen["generate"]["error"]
    assert seen["status"] == "blocked" and not seen["thread_started"] and seen["jobs"] == []


def test_local_backend_starts_logs_and_stops(run_scenario) -> None:
    command = f'"{sys.executable}" -c "print(\'ready\', flush=True); import time; time.sleep(60)"'
    seen = run_scenario("local_backend", command=command)
    assert seen["started"]["outcome"] == ["FINISHED"] and seen["running_after_start"]
    assert "ready" in seen["log"] and seen["log"][0].startswith("$ ")
    assert "already running" in seen["second_start"]["error"]
    assert not seen["running_after_stop"] and seen["status"].startswith("exited")
    assert "/extensions/.user/boxdream_test/boxdream/logs/" in seen["log_path"]


def test_built_zip_installs_and_enables(run_scenario, tmp_path: Path) -> None:
    (zip_path,) = build.build(tmp_path / "dist", wheels=False, cache=tmp_path / "cache")
    seen = run_scenario("installed_zip", zip_path=str(zip_path), source_tree=False)
    assert seen["install"]["error"] is None and seen["enabled"]
    assert "blender_manifest.toml" in seen["files"] and "build.py" not in seen["files"]
    assert "protocol" in seen["files"] and "protocol" not in seen["site_packages"]
    assert seen["protocol_file"].endswith("/boxdream/protocol/__init__.py")
    assert not seen["top_level_protocol"]  # nothing another extension's `protocol` can meet
    assert "generate" in seen["operators"]


@pytest.mark.slow
@pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() == "x86_64"),
    reason="installs the linux-x64 zip",
)
def test_release_zip_brings_its_own_pyzmq(run_scenario, tmp_path: Path) -> None:
    """The Blender 4.2-5.0 linux-x64 zip with pyzmq fetched by pip: Blender installs both
    wheels into the extensions' site-packages (which Python finds first in Blender's own
    Python, where no other pyzmq exists; here the venv's pyzmq may be found first)."""
    paths = build.build(tmp_path / "dist", cache=tmp_path / "cache", platforms=["linux-x64"])
    (zip_path,) = [path for path in paths if path.stem.endswith("blender42")]
    seen = run_scenario("installed_zip", zip_path=str(zip_path), source_tree=False)
    assert seen["install"]["error"] is None and seen["enabled"]
    assert "zmq" in seen["site_packages"] and "protocol" not in seen["site_packages"]
    assert any(name.startswith("pyzmq-") for name in seen["site_packages"])
