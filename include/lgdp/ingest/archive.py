"""The immutable archive of every file received, addressed by its SHA-256.

A file is archived before anything reads it, so no submission is ever lost, whatever happens next
(a parser crash, a rejected file, a council deleting its upload). ``lgdp.archived_files`` refuses
updates and deletes (a trigger, migration 0002); the same bytes arriving twice are stored once.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from lgdp.ledger.models import ArchivedFile


class NotArchived(LookupError):
    """No archived file has this SHA-256."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archive_file(session: Session, data: bytes) -> str:
    """Archive ``data`` (if it is not already) and return its SHA-256 (hex).

    Safe under concurrency and retries: ``INSERT ... ON CONFLICT DO NOTHING`` on the hash, so two
    workers archiving the same bytes at once leave one row (the second waits for the first to
    commit, then inserts nothing). Bytes already archived are not sent to the server again. The
    row commits with the caller's transaction.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("archive_file takes the file's bytes")
    data = bytes(data)
    digest = sha256_of(data)
    present = session.execute(select(ArchivedFile.sha256).where(ArchivedFile.sha256 == digest)).scalar_one_or_none()
    if present is None:
        session.execute(
            insert(ArchivedFile)
            .values(sha256=digest, size=len(data), content=data, first_seen_at=dt.datetime.now(dt.timezone.utc))
            .on_conflict_do_nothing(index_elements=[ArchivedFile.sha256])
        )
    return digest


def read_archived(session: Session, sha256: str) -> bytes:
    """The archived bytes with this SHA-256; raises ``NotArchived`` if there are none."""
    content = session.execute(select(ArchivedFile.content).where(ArchivedFile.sha256 == sha256)).scalar_one_or_none()
    if content is None:
        raise NotArchived(f"no archived file has sha256 {sha256}")
    return bytes(content)


__all__ = ["NotArchived", "archive_file", "read_archived", "sha256_of"]
