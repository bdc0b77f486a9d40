"""AnimateStream: live animation, a camera's frames in, animated frames out, frame by frame.

``animator`` animates one stream's frames (the source prepared once; per frame tracking, motion, keypoints, render,
paste-back, JPEG/I420); ``session`` runs the call: frames read as they arrive, the newest processed and stale ones
dropped (backpressure), the stream's limits and its end. The servicer method (``service.AnimateStream``) only admits
the stream, parses the setup and maps errors.
"""
from .animator import Arrival, LiveAnimator, LiveOutput, check_frame, decode_frame, live_options
from .session import FrameRate, FrameSlot, LiveSession, LiveStreams, setup_message

__all__ = ["Arrival", "FrameRate", "FrameSlot", "LiveAnimator", "LiveOutput", "LiveSession", "LiveStreams",
           "check_frame", "decode_frame", "live_options", "setup_message"]
