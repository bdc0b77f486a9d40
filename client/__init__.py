"""Client library (``PortraitClient``, ``AsyncPortraitClient``) and the ``liveportrait`` CLI."""
from .api import AsyncPortraitClient, PortraitClient
from .messages import animation_options, audio_options
from .edits import EditResult, edit_message, keyframes_message

__all__ = ["AsyncPortraitClient", "EditResult", "PortraitClient", "animation_options", "audio_options",
           "edit_message", "keyframes_message"]
