"""Export: from a density + albedo field (or a mesh) to a textured GLB, and GLB back to meshes.

marching.py (field -> surface), cleanup.py, decimate.py, uv_unwrap.py, texture_bake.py,
glb.py (GLB write/read, Z up <-> Y up), export_field.py (the stages in order, timed).
"""
