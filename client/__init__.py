"""Client library (``PortraitClient``, ``AsyncPortraitClient``) and the ``liveportrait`` CLI."""
from .api import AsyncPortraitClient, PortraitClient, animation_options

__all__ = ["AsyncPortraitClient", "PortraitClient", "animation_options"]
