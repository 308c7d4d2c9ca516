"""Page cursors: opaque to clients, authenticated by us.

A file cursor is `<file id>.<MAC>`: the file id the next page starts after, and an HMAC-SHA256 (128
bits) of the tenant, the batch and that file id under a key only the stack has. A key cursor
(`encode_key`) carries any position text instead, base64url-encoded: `<text>.<MAC>`, the MAC over
the tenant, the list it pages (its scope) and the encoded text. A cursor is checked before anything
in it is used, so a forged cursor, or one issued for another batch, list or tenant, is refused
without parsing attacker data. Keys rotate: the current key signs, older keys still verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from filebatch.errors import InvalidRequestError
from filebatch.services.ports import CursorKeys

_MAC_BYTES = 16
_CURSOR = re.compile(r"^(?P<file>f[0-9]{5})\.(?P<mac>[A-Za-z0-9_-]{22})$")
# Scopes are names of lists ("batches"), never batch ids (b-…): a key cursor never verifies as a
# file cursor, nor the other way round.
_KEY_CURSOR = re.compile(r"^(?P<text>[A-Za-z0-9_-]{1,1500})\.(?P<mac>[A-Za-z0-9_-]{22})$")
_KEY_SCOPE_PREFIX = "list:"


class CursorSigner:
    def __init__(self, keys: CursorKeys) -> None:
        self._keys = keys

    def encode(self, tenant_id: str, batch_id: str, after_file_id: str) -> str:
        current = self._keys.signing_keys()[0]
        return f"{after_file_id}.{_mac(current, tenant_id, batch_id, after_file_id)}"

    def decode(self, tenant_id: str, batch_id: str, cursor: str) -> str:
        """The file id a cursor continues after; InvalidRequestError (invalid_cursor) for any cursor
        this stack did not issue for this tenant's batch."""
        match = _CURSOR.fullmatch(cursor)
        if match is not None:
            file_id, mac = match["file"], match["mac"]
            for key in self._keys.signing_keys():
                if hmac.compare_digest(mac, _mac(key, tenant_id, batch_id, file_id)):
                    return file_id
        raise InvalidRequestError("cursor is not one this batch's pages returned", code="invalid_cursor")

    def encode_key(self, tenant_id: str, scope: str, position: str) -> str:
        """A cursor for the tenant's list `scope` carrying `position` (any text) back to us."""
        text = base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")
        current = self._keys.signing_keys()[0]
        return f"{text}.{_mac(current, tenant_id, _KEY_SCOPE_PREFIX + scope, text)}"

    def decode_key(self, tenant_id: str, scope: str, cursor: str) -> str:
        """The position a key cursor carries; InvalidRequestError (invalid_cursor) for any cursor this
        stack did not issue for this tenant's list."""
        match = _KEY_CURSOR.fullmatch(cursor)
        if match is not None:
            text, mac = match["text"], match["mac"]
            for key in self._keys.signing_keys():
                if hmac.compare_digest(mac, _mac(key, tenant_id, _KEY_SCOPE_PREFIX + scope, text)):
                    try:
                        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
                    except (binascii.Error, UnicodeDecodeError):
                        break  # signed by us, so unreachable; refused like any other cursor
        raise InvalidRequestError("cursor is not one this list's pages returned", code="invalid_cursor")


def _mac(key: bytes, tenant_id: str, scope: str, position: str) -> str:
    digest = hmac.new(key, f"{tenant_id}\n{scope}\n{position}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode().rstrip("=")
