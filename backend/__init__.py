"""BoxDream backend: pipelines, representation, renderer, guidance, export, server, CLI."""

__version__ = "0.1.0"
