"""Pure codecs: bytes in, values out (link layers, HTTP/1, HTTP/2, WebSocket frames, TLS)."""
