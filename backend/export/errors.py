"""The one error type of the export package: a mesh or GLB that BoxDream cannot use."""


class MeshError(ValueError):
    """A mesh, a GLB file or a field that cannot be exported or read.

    `field` names the part at fault (`"glb"`, `"vertices"`, `"faces"`, `"uvs"`, `"texture"`,
    `"vertex_colors"`, `"transform"`, `"density"`), so a server can report it the way it reports
    a bad message field.
    """

    def __init__(self, message: str, field: str = "glb") -> None:
        super().__init__(message)
        self.field = field
