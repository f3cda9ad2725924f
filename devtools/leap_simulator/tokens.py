"""Opaque page tokens that behave like Leap's: they need URL encoding and only work for their query.

A token is standard base64 (the alphabet with ``+`` and ``/``) of: a fixed prefix whose encoding
starts with ``+/`` (so every token has both), the cursor, a digest of the query it belongs to, the
token generation, and a MAC. Its length leaves ``=`` padding at the end. A client that forgets to
URL-encode sends ``+`` raw, the server reads a space, and the token no longer decodes: a 400, as the
guide warns. Nothing is stored per token, so paging 100,000 entries costs no memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

_PREFIX = b"\xfb\xff"  # base64 "+/..": guarantees both characters that need encoding
_BODY = struct.Struct(">BIIH8s")  # kind, generation, cursor, sub-cursor, query digest
_MAC_SIZE = 8
_SIZE = len(_PREFIX) + _BODY.size + _MAC_SIZE  # 29 bytes: not a multiple of 3, so "=" padding

CONNECT = 1
METERS = 2


class BadPageToken(ValueError):
    """The token was not issued by this server, was altered, belongs to another query, or expired."""


@dataclass(frozen=True, slots=True)
class Cursor:
    position: int  # the first customer index not yet served
    sub_position: int = 0  # within that customer (the meter number)


def query_digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode()).digest()[:8]


class PageTokens:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self.generation = 0

    def expire_all(self) -> None:
        """Every token issued so far stops working (Leap's tokens may expire)."""
        self.generation += 1

    def issue(self, kind: int, cursor: Cursor, digest: bytes) -> str:
        body = _PREFIX + _BODY.pack(kind, self.generation, cursor.position, cursor.sub_position, digest)
        return base64.b64encode(body + self._mac(body)).decode("ascii")

    def open(self, token: str, kind: int, digest: bytes) -> Cursor:
        try:
            raw = base64.b64decode(token.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise BadPageToken("the page token is not valid base64 (was it URL-encoded?)") from exc
        if len(raw) != _SIZE or not raw.startswith(_PREFIX):
            raise BadPageToken("the page token is not one this server issued")
        body, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise BadPageToken("the page token is not one this server issued")
        token_kind, generation, position, sub_position, token_digest = _BODY.unpack(body[len(_PREFIX) :])
        if token_kind != kind or token_digest != digest:
            raise BadPageToken("the page token belongs to a different query")
        if generation != self.generation:
            raise BadPageToken("the page token has expired")
        return Cursor(position, sub_position)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:_MAC_SIZE]
