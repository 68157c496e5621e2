"""Send an email at most once per dedupe key, recorded in the ledger's ``lgdp.sent_emails``.

How it stays exactly-once under retries, reruns, backfills and two workers at once:

1. ``INSERT ... ON CONFLICT (dedupe_key) DO NOTHING`` makes sure the row exists (``sending``).
2. ``SELECT ... FOR UPDATE`` locks it. A second sender of the same key waits here; when it gets
   the lock it sees ``sent`` and returns ``already_sent``.
3. Still holding the lock, the transport sends; the row becomes ``sent`` with the Message-ID and
   the transaction commits.
4. If the send raises, the transaction rolls back and the row is marked ``failed`` (attempts + 1,
   the error's type and the server's reply; never the body), and the exception is re-raised so the
   Airflow task retries. The next call sends again, because the row is not ``sent``.

The one window left is a crash after the server accepted the message and before the commit: the
row then stays unsent and a retry sends a second copy. That errs on the side of a duplicate
rather than a lost reminder.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from lgdp.ledger.db import engine
from lgdp.ledger.models import SentEmail
from lgdp.notify.message import Email
from lgdp.notify.transports import Transport, transport_from_env

log = logging.getLogger(__name__)
TABLE = SentEmail.__table__
# A send waits this long for another worker holding the same key before giving up (and retrying).
LOCK_TIMEOUT = "60s"


@dataclass(frozen=True)
class SendResult:
    status: Literal["sent", "already_sent"]
    message_id: str | None


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def send_email(
    email: Email,
    *,
    dedupe_key: str,
    kind: str,
    return_id: str | None = None,
    period: str | None = None,
    council_code: str | None = None,
    transport: Transport | None = None,
) -> SendResult:
    """Send ``email`` unless a message with ``dedupe_key`` was already sent; raise if the send fails."""
    transport = transport or transport_from_env()
    recipients = email.recipients()
    now = dt.datetime.now(dt.timezone.utc)
    eng = engine()
    with eng.begin() as conn:
        conn.execute(
            insert(TABLE)
            .values(
                dedupe_key=dedupe_key, kind=kind, return_id=return_id, period=period, council_code=council_code,
                recipients=recipients, subject=email.subject, transport=transport.name, status="sending",
                attempts=0, created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
        )
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            row = conn.execute(
                select(TABLE.c.status, TABLE.c.message_id).where(TABLE.c.dedupe_key == dedupe_key).with_for_update()
            ).one()
            if row.status == "sent":
                log.info("email %s was already sent (message %s): not sending again", dedupe_key, row.message_id)
                return SendResult("already_sent", row.message_id)
            message_id = transport.send(email)
            conn.execute(
                update(TABLE)
                .where(TABLE.c.dedupe_key == dedupe_key)
                .values(
                    status="sent", message_id=message_id, attempts=TABLE.c.attempts + 1, error=None,
                    sent_at=dt.datetime.now(dt.timezone.utc), recipients=recipients, subject=email.subject,
                    transport=transport.name,
                )
            )
    except Exception as exc:
        with eng.begin() as conn:
            conn.execute(
                update(TABLE)
                .where(TABLE.c.dedupe_key == dedupe_key, TABLE.c.status != "sent")
                .values(status="failed", attempts=TABLE.c.attempts + 1, error=_error_text(exc), transport=transport.name)
            )
        log.warning("email %s was not sent (%s); the task's retry will send it", dedupe_key, type(exc).__name__)
        raise
    log.info("sent email %s to %d recipient(s) by %s: %s", dedupe_key, len(recipients), transport.name, message_id)
    return SendResult("sent", message_id)
