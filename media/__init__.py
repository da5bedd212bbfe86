"""Media layer: RTP/RTCP, G.711, SDP offer/answer, DTMF, prompts, recording, mixing and TTS.

The call layer talks to `media.backend.MediaBackend` (implemented in-process by
`media.local.LocalMediaBackend`) and to `media.sdp` for offer/answer. Everything except `local`,
`recorder.WavAppender` and `tts` is sans-IO: no sockets, no clocks, no sleeping.
"""
