"""The platform's email: templates, one ledger of everything sent, and thin transports.

Every email the platform sends (reminders, digests, validation outcomes, requester notices) goes
through :func:`send_email`, which records it in ``lgdp.sent_emails`` under a dedupe key so that
Airflow retries, reruns and backfills never send the same message twice, and a failed send is
retried rather than lost. Content comes from Jinja templates (:func:`render`): HTML with a
plain-text alternative. Nothing here needs Airflow except the transports, which use the smtp and
azure providers' hooks for their connections.
"""

from lgdp.notify.message import Email, build_mime
from lgdp.notify.recipients import addresses, contacts
from lgdp.notify.render import Rendered, render
from lgdp.notify.send import SendResult, send_email

__all__ = ["Email", "Rendered", "SendResult", "addresses", "build_mime", "contacts", "render", "send_email"]
