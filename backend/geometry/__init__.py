"""What both the fields and the renderers stand on: oriented boxes, triangle coverage, and the
values a field gives the renderer at sample points. Imports nothing from field/ or render/."""
