"""The WebRTC gateway (``liveportrait gateway``): a browser, OBS or any WHIP client sends its camera as a WebRTC
video track, or its microphone as an audio track, and gets the animated portrait back as a video track (and, for a
voice, the voice itself delayed to the mouth), live.

The gateway is a client of the orchestrator's gRPC API, like the web page: each peer connection is one
``AnimateStream`` call (``client.live.LiveStream``) made with the caller's own API key, so it scales apart from the
orchestrators and holds no model. ``signalling`` is the HTTP side (WHIP-style offer/answer, portrait uploads, errors
in words), ``session`` one peer connection and its stream with the camera mode's driver, ``voice`` the voice mode's
driver (``?mode=voice``: the peer's audio drives the stream's voice mode) and ``playout`` the clock it sends frames
and voice on, ``viewers`` the WHEP viewers of a session (an ingest-only sender, such as OBS, is watched there),
``app`` the routes and the bounds on sessions and viewers, ``metrics`` its own Prometheus registry, ``cli`` the
``liveportrait gateway`` command; ``peer`` and ``voice_peer`` are Python WHIP peers of each mode (tests, load tests).
Needs the ``webrtc`` extra.
"""
