"""The WebRTC gateway (``liveportrait gateway``): a browser, OBS or any WHIP client sends its camera as a WebRTC
video track and gets the animated portrait back as one, live.

The gateway is a client of the orchestrator's gRPC API, like the web page: each peer connection is one
``AnimateStream`` call (``client.live.LiveStream``) made with the caller's own API key, so it scales apart from the
orchestrators and holds no model. ``signalling`` is the HTTP side (WHIP-style offer/answer, portrait uploads, errors
in words), ``session`` one peer connection and its stream, ``app`` the routes and the bounds on sessions, ``metrics``
its own Prometheus registry, ``cli`` the ``liveportrait gateway`` command. Needs the ``webrtc`` extra.

Camera mode only for now: a session takes the peer's video track as the driving frames. The voice mode (a microphone
track driving the audio live stream, the voice sent back delayed to the mouth) plugs in beside
``session.CameraDriver``: a driver turns an incoming track of its kind into what the stream is sent; the peer
connection, signalling, bounds and outgoing video track stay as they are (an outgoing audio track is added).
"""
