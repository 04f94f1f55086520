"""The add-on's method menu offers exactly the backend's methods (read without bpy)."""

from __future__ import annotations

import ast
from pathlib import Path

from backend.pipelines.catalogue import METHODS

PROPERTIES = Path(__file__).resolve().parents[2] / "blender_addon" / "properties.py"


def test_the_method_menu_lists_every_backend_method_in_order():
    tree = ast.parse(PROPERTIES.read_text())
    (items,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "METHOD_ITEMS" for t in node.targets)
    ]
    names = tuple(ast.literal_eval(item)[0] for item in items.elts)
    assert names == METHODS
