"""BoxDream wire protocol: messages, multipart framing, limits and the ZeroMQ client.

Standard library and pyzmq only (numpy optional, never torch or bpy): the Blender add-on
vendors this package. See PROTOCOL.md beside this file for every message.
"""
