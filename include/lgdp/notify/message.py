"""An email to send, and its MIME form (plain text with an HTML alternative, then attachments)."""

from __future__ import annotations

from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr


# Headers up to SMTP's hard limit on one line: Python's folding at 78 characters sometimes moves a
# whole subject onto a continuation line, which some parsers read back with a leading space.
POLICY = policy.default.clone(max_line_length=998)


@dataclass
class Email:
    to: list[str]
    subject: str
    text: str
    html: str
    cc: list[str] = field(default_factory=list)
    attachments: list[tuple[str, bytes, str]] = field(default_factory=list)  # (filename, content, mimetype)

    def recipients(self) -> list[str]:
        return list(dict.fromkeys([*self.to, *self.cc]))


def sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    if "@" not in address:
        raise ValueError(f"the sender {sender!r} is not an email address: set from_email on the mail connection")
    return address.rsplit("@", 1)[1]


def new_message_id(sender: str) -> str:
    """A Message-ID on the sender's own domain, so replies and bounces thread to our mailbox."""
    return make_msgid(idstring="lgdp", domain=sender_domain(sender))


def build_mime(email: Email, sender: str, message_id: str | None = None) -> EmailMessage:
    """multipart/alternative (text first, HTML preferred), wrapped in multipart/mixed if attachments.

    Built here rather than by the smtp provider because its hook sends HTML only, and a reader
    whose client shows plain text (or a screen reader set to it) must get the whole message.
    """
    if not email.to:
        raise ValueError("an email needs at least one recipient")
    msg = EmailMessage(policy=POLICY)
    msg["Subject"] = email.subject
    msg["From"] = sender
    msg["To"] = ", ".join(email.to)
    if email.cc:
        msg["Cc"] = ", ".join(email.cc)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = message_id or new_message_id(sender)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: out-of-office replies should not answer
    msg.set_content(email.text, subtype="plain", charset="utf-8")
    msg.add_alternative(email.html, subtype="html", charset="utf-8")
    for filename, content, mimetype in email.attachments:
        maintype, _, subtype = mimetype.partition("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    return msg
