"""A stand-in for `bpy.types.UILayout` that checks every call against Blender's RNA.

A real UILayout exists only while Blender draws a region, which never happens with bpy as a
module. This recorder accepts exactly what the real one would: functions that UILayout's RNA
defines, with its parameter names, required parameters present, enum values (icons, types)
from the RNA enum, `prop()` naming a property of its data, `template_list()` naming a
registered UIList and existing collections, `operator()` naming a registered operator whose
returned properties accept only that operator's property names; attributes that UILayout
defines. Labels and operators are recorded so tests can check what the panel shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import bpy

LAYOUT_RNA = bpy.types.UILayout.bl_rna


@dataclass
class Drawn:
    """What a draw call put on screen, in order."""

    labels: list[str] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)
    props: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)


class LayoutCheckError(AssertionError):
    """A draw call the real UILayout would reject."""


class OperatorProperties:
    """The properties returned by `layout.operator()`: only the operator's own names."""

    def __init__(self, idname: str, names: set[str]) -> None:
        object.__setattr__(self, "_idname", idname)
        object.__setattr__(self, "_names", names)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._names:
            raise LayoutCheckError(f"operator {self._idname} has no property {name!r}")


def _operator_properties(idname: str) -> set[str]:
    module, _, name = idname.partition(".")
    try:
        rna = getattr(getattr(bpy.ops, module), name).get_rna_type()
    except (AttributeError, KeyError) as exc:
        raise LayoutCheckError(f"operator {idname!r} is not registered") from exc
    return set(rna.properties.keys()) - {"rna_type"}


def _check_property(data: Any, name: str, where: str) -> None:
    if data is None:
        raise LayoutCheckError(f"{where}: data is None")
    if name not in data.bl_rna.properties:
        raise LayoutCheckError(f"{where}: {data.bl_rna.identifier} has no property {name!r}")


class RnaCheckedLayout:
    """Records draw calls and rejects any the real `UILayout` would reject."""

    def __init__(self, drawn: Drawn | None = None) -> None:
        object.__setattr__(self, "drawn", drawn or Drawn())

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in LAYOUT_RNA.properties:
            raise LayoutCheckError(f"UILayout has no attribute {name!r}")

    def __getattr__(self, name: str) -> Any:
        function = LAYOUT_RNA.functions.get(name)
        if function is None:
            raise LayoutCheckError(f"UILayout has no function {name!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, function, args, kwargs)

        return call

    def _call(self, name: str, function: Any, args: tuple, kwargs: dict) -> Any:
        inputs = [p for p in function.parameters if not p.is_output]
        outputs = [p for p in function.parameters if p.is_output]
        if len(args) > len(inputs):
            raise LayoutCheckError(
                f"{name}: {len(args)} positional arguments, at most {len(inputs)}"
            )
        bound = {p.identifier: value for p, value in zip(inputs, args, strict=False)}
        for key, value in kwargs.items():
            if key not in {p.identifier for p in inputs}:
                raise LayoutCheckError(f"{name}: no parameter {key!r}")
            if key in bound:
                raise LayoutCheckError(f"{name}: {key!r} given twice")
            bound[key] = value
        for parameter in inputs:
            if parameter.is_required and parameter.identifier not in bound:
                raise LayoutCheckError(f"{name}: missing required {parameter.identifier!r}")
            if parameter.type == "ENUM" and parameter.identifier in bound:
                value = bound[parameter.identifier]
                if value not in parameter.enum_items:
                    raise LayoutCheckError(f"{name}: {parameter.identifier}={value!r} is not valid")
        drawn = self.drawn
        drawn.calls.append(name)
        if name == "label":
            drawn.labels.append(str(bound.get("text", "")))
        elif name in ("prop", "prop_search", "prop_enum", "prop_menu_enum", "props_enum"):
            _check_property(bound.get("data"), bound.get("property"), name)
            drawn.props.append(bound["property"])
        elif name == "template_list":
            if not hasattr(bpy.types, bound["listtype_name"]):
                raise LayoutCheckError(f"template_list: no UIList {bound['listtype_name']!r}")
            _check_property(bound["dataptr"], bound["propname"], name)
            _check_property(bound["active_dataptr"], bound["active_propname"], name)
        elif name == "progress":
            factor = bound.get("factor", 0.0)
            if not 0.0 <= factor <= 1.0:
                raise LayoutCheckError(f"progress: factor {factor} outside [0, 1]")
            drawn.labels.append(str(bound.get("text", "")))
        if name == "operator":
            idname = bound["operator"]
            drawn.operators.append(idname)
            return OperatorProperties(idname, _operator_properties(idname))
        if (
            outputs
            and outputs[0].type == "POINTER"
            and outputs[0].fixed_type.identifier == "UILayout"
        ):
            return RnaCheckedLayout(drawn)
        return None
