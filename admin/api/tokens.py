"""Access tokens for people: short-lived JWTs (HS256) naming the user by id.

The token says only who; the role and whether the user is still active are read from the
database on every request, so a demotion or deactivation takes effect at once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import jwt

_ALGORITHM = "HS256"
_AUDIENCE = "parley-api"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: dt.datetime


class InvalidToken(ValueError):
    """The token is malformed, forged, expired or not one of ours."""


def issue(user_id: int, *, key: bytes, minutes: int, now: dt.datetime) -> IssuedToken:
    expires = now + dt.timedelta(minutes=minutes)
    claims = {"sub": str(user_id), "aud": _AUDIENCE, "iat": now, "exp": expires}
    return IssuedToken(jwt.encode(claims, key, algorithm=_ALGORITHM), expires)


def user_id(token: str, *, key: bytes) -> int:
    """The user id the token was issued to; raises InvalidToken for anything else."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],
            audience=_AUDIENCE,
            options={"require": ["sub", "exp", "aud"]},
        )
        return int(claims["sub"])
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise InvalidToken(str(error)) from None
