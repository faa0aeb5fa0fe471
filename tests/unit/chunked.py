"""Strict HTTP chunked decoding for the mock's byte-level tests."""


def dechunk(raw: bytes) -> bytes:
    """Decode a chunked body strictly; fail on anything malformed or trailing."""
    out, pos = b"", 0
    while True:
        eol = raw.index(b"\r\n", pos)
        size = int(raw[pos:eol], 16)
        start = eol + 2
        assert raw[start + size:start + size + 2] == b"\r\n", "chunk not closed by CRLF"
        if size == 0:
            assert start + 2 == len(raw), "bytes after the last chunk"
            return out
        out += raw[start:start + size]
        pos = start + size + 2
