"""Who is asking and how much they may send: bearer-key namespaces and the body size limit."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import AsyncIterator

from ..errors import ConfigError
from .config import LoadedServeConfig
from .protocol import APIError

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_DRAIN_LIMIT = 128 * 1024 * 1024  # read (and drop) at most this much of an oversized body


class Auth:
    """Bearer keys from the environment; each key is its own namespace, named by a hash of the
    key so that the secret is never stored or logged."""

    def __init__(self, keys: list[str] | None) -> None:
        self.keys = [k.encode() for k in keys] if keys is not None else None
        self._names = {k: "k_" + hashlib.sha256(k).hexdigest()[:24] for k in self.keys or []}

    @classmethod
    def from_config(cls, loaded: LoadedServeConfig, host: str) -> Auth:
        env = loaded.config.server.keys_env
        if env is None:
            if host not in _LOOPBACK:
                raise ConfigError(f"binding {host} without API keys would open every conversation to the network; "
                                  "set server.keys_env and export the keys", file=loaded.file, key="server.keys_env")
            return cls(None)
        keys = [k.strip() for k in os.environ.get(env, "").split(",") if k.strip()]
        if not keys:
            raise ConfigError(f"no API keys: export {env}=key1,key2 (comma-separated), or set server.keys_env: null "
                              "for an unauthenticated loopback-only server", file=loaded.file, key="server.keys_env")
        return cls(keys)

    def namespace_of(self, authorization: str | list[str]) -> str:
        """The namespace of an ``Authorization`` header value (or of every such header a request
        has); 401 without a known key, and 401 for two headers: which one counts is no guess
        to make with credentials."""
        if self.keys is None:
            return "public"
        if isinstance(authorization, list):
            if len(authorization) > 1:
                raise APIError(401, "send one Authorization header, not several", code="invalid_api_key")
            authorization = authorization[0] if authorization else ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        given = token.strip().encode()
        found = None
        for key in self.keys:  # every key compared, in constant time each
            if hmac.compare_digest(given, key):
                found = key
        if found is None:
            raise APIError(401, "invalid API key", code="invalid_api_key")
        return self._names[found]


async def read_limited(chunks: AsyncIterator[bytes], content_length: str, limit: int) -> bytes:
    """The body, or 413 past ``limit`` bytes (the rest is read and dropped so that the client
    sees the answer rather than a reset connection)."""
    too_big = content_length.isdigit() and int(content_length) > limit
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            too_big = True
        if too_big:
            if size > _DRAIN_LIMIT:
                break
            continue
        parts.append(chunk)
    if too_big:
        raise APIError(413, f"the request body is larger than {limit:,} bytes", code="request_too_large")
    return b"".join(parts)
