"""SIP driver: protocol pieces as plain objects (messages, SDP, RTP, digest, registrar).

Everything in this package is sans-I/O: bytes or events go in, bytes or decisions come out.
The sockets, timers and tasks that drive these objects live in the driver's I/O shell.
"""
