"""Thin transports: hand a built email to the mail server configured in an Airflow connection.

- ``smtp`` (default): the smtp provider's ``SmtpHook`` opens and authenticates the connection
  (``LGDP_SMTP_CONN_ID``, default ``smtp_default``; sender from its ``from_email`` extra or
  ``LGDP_MAIL_FROM``). The hook's own ``send_email_smtp`` builds an HTML-only message and retries
  in a loop, so we build the multipart/alternative message ourselves and send it once through the
  hook's client: retries belong to the Airflow task, which knows what was already sent.
- ``msgraph`` (``LGDP_MAIL_TRANSPORT=msgraph``): the azure provider's ``MSGraphMailHook``
  (``LGDP_MSGRAPH_MAIL_CONN_ID``, default ``msgraph_mail``) posts Graph ``sendMail`` from the
  mailbox in ``LGDP_MAIL_FROM`` or the connection's ``from_email`` extra. Graph's JSON message has
  one body, so this transport sends the HTML part (Outlook derives a text view from it).

Each ``send`` returns the Message-ID it used; errors propagate unchanged for the caller to record.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from lgdp.notify.message import Email, build_mime, new_message_id


class Transport(Protocol):
    name: str

    def send(self, email: Email) -> str: ...


class MailNotConfigured(RuntimeError):
    pass


def _sender(extra_from: str | None) -> str:
    sender = os.environ.get("LGDP_MAIL_FROM") or extra_from
    if not sender:
        raise MailNotConfigured(
            "no sender address: set the 'from_email' extra on the mail connection or LGDP_MAIL_FROM"
        )
    return sender


class SmtpTransport:
    name = "smtp"

    def __init__(self, conn_id: str | None = None) -> None:
        self.conn_id = conn_id or os.environ.get("LGDP_SMTP_CONN_ID", "smtp_default")

    def send(self, email: Email) -> str:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=self.conn_id) as hook:
            sender = _sender(hook.from_email)
            msg = build_mime(email, sender)
            # The hook exposes no public "send this MIME message": its client is the connection.
            hook._smtp_client.send_message(msg, from_addr=sender, to_addrs=email.recipients())
        return str(msg["Message-ID"])


class GraphTransport:
    name = "msgraph"

    def __init__(self, conn_id: str | None = None) -> None:
        self.conn_id = conn_id or os.environ.get("LGDP_MSGRAPH_MAIL_CONN_ID", "msgraph_mail")

    def send(self, email: Email) -> str:
        from airflow.providers.microsoft.azure.hooks.msgraph import MSGraphMailHook

        hook = MSGraphMailHook(conn_id=self.conn_id)
        sender = _sender(hook.get_connection(self.conn_id).extra_dejson.get("from_email"))
        message_id = new_message_id(sender)
        # The hook attaches files by path; they live only for this call, inside this task.
        with tempfile.TemporaryDirectory(prefix="lgdp-mail-") as tmp:
            files = []
            for i, (filename, content, _mimetype) in enumerate(email.attachments):
                path = Path(tmp) / str(i) / Path(filename).name
                path.parent.mkdir()
                path.write_bytes(content)
                files.append(str(path))
            hook.send_email(
                from_email=sender,
                to=email.to,
                cc=email.cc or None,
                subject=email.subject,
                html_content=email.html,
                files=files or None,
                custom_headers={"x-lgdp-message-id": message_id},
            )
        return message_id


def transport_from_env() -> Transport:
    name = os.environ.get("LGDP_MAIL_TRANSPORT", "smtp").strip().lower()
    if name == "smtp":
        return SmtpTransport()
    if name == "msgraph":
        return GraphTransport()
    raise MailNotConfigured(f"LGDP_MAIL_TRANSPORT={name!r} is not a transport: use 'smtp' or 'msgraph'")
