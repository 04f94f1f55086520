"""Runs one scenario of `scenarios.py` in a fresh Python with bpy, and prints its observations.

    python tests/blender_addon/bpy_runner.py NAME '{"keyword": "arguments"}'

Run by file path (not `-m`), so the repository is on `sys.path` only when the caller puts it
on PYTHONPATH: the installed-zip scenario must find `protocol` in the extension's wheels.
The last line of stdout is `SCENARIO-RESULT <json>`; a failure exits 1 with the traceback.
"""

from __future__ import annotations

import json
import sys

RESULT_PREFIX = "SCENARIO-RESULT "


def main() -> int:
    name, arguments = sys.argv[1], json.loads(sys.argv[2])
    import scenarios

    result = getattr(scenarios, name)(**arguments)
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
