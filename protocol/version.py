"""The protocol version both sides put in every message header."""

PROTOCOL_VERSION = 1
"""Bumped on any incompatible change of a message, a field or a rule."""
