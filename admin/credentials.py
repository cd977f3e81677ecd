"""Secrets users hold: API keys (only their SHA-256 is stored) and passwords (scrypt)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.models import ApiKey, User, utcnow

_KEY_SCHEME = "parley"
# scrypt cost: 16 MiB and ~50 ms per check; stored with each hash so it can be raised later.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def api_key_hash(key: str) -> str:
    """Keys are 256 random bits, so a plain SHA-256 is enough to make a stolen table useless."""
    return hashlib.sha256(key.encode()).hexdigest()


def issue_api_key(session: Session, *, user: User, name: str) -> str:
    """Creates a key for `user` and returns it; this is the only time it is seen in clear."""
    prefix = secrets.token_hex(4)
    key = f"{_KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(user=user, name=name, prefix=prefix, key_hash=api_key_hash(key)))
    session.flush()
    return key


def user_for_api_key(session: Session, key: str) -> User | None:
    """The active user owning `key`, if the key exists and is not revoked; marks it used."""
    api_key = session.scalar(select(ApiKey).where(ApiKey.key_hash == api_key_hash(key)))
    if api_key is None or api_key.revoked_at is not None or not api_key.user.active:
        return None
    api_key.last_used_at = utcnow()
    return api_key.user


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except ValueError:  # a malformed stored hash never matches
        return False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
