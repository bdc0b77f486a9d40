"""Video frames handed to the decoder when they are complete, not when the next one starts.

aiortc's receiver (its ``JitterBuffer``) knows a video frame is complete only when a packet of the next frame
arrives, so every received frame waits one frame interval: for the gateway, one camera frame (33-40 ms); for an
aiortc peer receiving the animated portrait, one *animated* frame (hundreds of ms on a CPU stack). A frame's last
RTP packet carries the marker bit (RFC 3551; VP8: RFC 7741, H.264: RFC 6184), which is what browsers go by:
``MarkerJitterBuffer`` completes a video frame at its marked packet once every packet before it is there, and
otherwise behaves as aiortc's. ``install()`` makes aiortc's receivers use it in this process (the gateway and the
Python peers); audio is unchanged.
"""
from __future__ import annotations

from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame


class MarkerJitterBuffer(JitterBuffer):
    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        if not self._is_video:
            return self._audio_frame()
        packets, timestamp = [], None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None  # a gap: wait for the missing packet
            if timestamp is not None and packet.timestamp != timestamp:  # the next frame began: complete anyway
                self.remove(count)
                return JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
            timestamp = packet.timestamp
            packets.append(packet)
            if packet.marker:  # the frame's last packet
                self.remove(count + 1)
                return JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
        return None

    def _audio_frame(self) -> JitterFrame | None:
        """The oldest packet held, as a frame of its own (the packets before it, missing, are given up)."""
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is not None:
                self.remove(count + 1)
                return JitterFrame(data=packet._data, timestamp=packet.timestamp)
        return None


def install() -> None:
    rtcrtpreceiver.JitterBuffer = MarkerJitterBuffer
