"""The states of a client connection (transport/h1_server.py), and what its deadline is for."""

HEAD, PENDING, BUFFER, BODY, WAIT, TUNNEL, CLOSED = range(7)
"""What the connection is doing; see the theory of operation in h1_server.py."""

IDLE, HEAD_TIMEOUT, BODY_TIMEOUT, SEND, TUNNEL_IDLE = range(5)
"""What ``deadline`` is for: idle keep-alive, slow head, stalled body, slow reader, idle tunnel."""

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
