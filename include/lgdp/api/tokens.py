"""Council system tokens: issued once, kept only as a SHA-256, revocable, with an expiry.

A token reads ``lgdp_<id>_<secret>``: the id is public (it names the token in the request log and
on the command line), the secret is 32 random bytes; only ``sha256(secret)`` is stored. A
high-entropy random secret needs no slow hash: nothing can be guessed from its digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from lgdp.ledger.models import ApiToken, Council

PREFIX = "lgdp"
TOKEN_FORM = re.compile(r"^lgdp_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
DEFAULT_DAYS = 365
MAX_DAYS = 3 * 366
DEFAULT_RATE_PER_MINUTE = 120


class TokenProblem(Exception):
    """Why a presented token does not authenticate: ``code`` for machines, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Issued:
    id: str
    token: str  # shown once
    council_code: str
    expires_at: dt.datetime
    rate_per_minute: int


@dataclass(frozen=True)
class Caller:
    token_id: str
    council_code: str
    rate_per_minute: int
    expires_at: dt.datetime


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def issue_token(
    session: Session,
    council_code: str,
    *,
    name: str = "",
    days: int = DEFAULT_DAYS,
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE,
    now: dt.datetime | None = None,
) -> Issued:
    """A new token for the council's system; the council must be in the ledger (``lgdp db sync``)."""
    if session.get(Council, council_code) is None:
        raise ValueError(f"council {council_code} is not in the ledger: register the returns first (lgdp db sync)")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"--days must be between 1 and {MAX_DAYS}")
    if not 1 <= rate_per_minute <= 10_000:
        raise ValueError("--rate-per-minute must be between 1 and 10000")
    now = now or _now()
    token_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
    secret = secrets.token_urlsafe(32)  # 43 characters
    expires = now + dt.timedelta(days=days)
    session.add(
        ApiToken(
            id=token_id,
            council_code=council_code,
            name=name or f"{council_code} system",
            secret_sha256=_digest(secret),
            rate_per_minute=rate_per_minute,
            created_at=now,
            expires_at=expires,
        )
    )
    session.flush()
    return Issued(token_id, f"{PREFIX}_{token_id}_{secret}", council_code, expires, rate_per_minute)


def revoke_token(session: Session, token_id: str, now: dt.datetime | None = None) -> bool:
    """Revoke at once; False if there is no such token. Revoking twice keeps the first time."""
    row = session.get(ApiToken, token_id)
    if row is None:
        return False
    if row.revoked_at is None:
        row.revoked_at = now or _now()
    return True


def list_tokens(session: Session, council_code: str | None = None) -> list[ApiToken]:
    q = select(ApiToken).order_by(ApiToken.council_code, ApiToken.created_at)
    if council_code:
        q = q.where(ApiToken.council_code == council_code)
    return list(session.execute(q).scalars())


def token_id_of(presented: str | None) -> str | None:
    """The id part of a well-formed token (for the log), else None."""
    m = TOKEN_FORM.match(presented or "")
    return m.group(1) if m else None


def authenticate(session: Session, presented: str | None, now: dt.datetime | None = None) -> Caller:
    """The caller a token stands for, or :class:`TokenProblem` (missing, invalid, expired, revoked)."""
    if not presented:
        raise TokenProblem("token_missing", "Send your council system's token: Authorization: Bearer lgdp_...")
    m = TOKEN_FORM.match(presented)
    if not m:
        raise TokenProblem("token_invalid", "This is not a token of this API; ask the platform team for one (lgdp api token issue).")
    row = session.get(ApiToken, m.group(1))
    if row is None or not hmac.compare_digest(row.secret_sha256, _digest(m.group(2))):
        raise TokenProblem("token_invalid", "The token is not valid; check it was copied whole, or ask the platform team for a new one.")
    now = now or _now()
    if row.revoked_at is not None:
        raise TokenProblem("token_revoked", f"Token {row.id} was revoked on {row.revoked_at:%d %B %Y}; ask the platform team for a new one.")
    if row.expires_at <= now:
        raise TokenProblem("token_expired", f"Token {row.id} expired on {row.expires_at:%d %B %Y}; ask the platform team for a new one.")
    return Caller(row.id, row.council_code, row.rate_per_minute, row.expires_at)
