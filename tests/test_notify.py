"""The shared email package against a real SMTP server (aiosmtpd) and the Graph stand-in.

Messages are read back from the server as a person's mail client would show them: subject,
the plain-text part, the HTML part, attachments. The ledger is a real PostgreSQL.
"""

from __future__ import annotations

import json
import threading

import pytest
from jinja2 import UndefinedError
from sqlalchemy import select

from lgdp.ledger.db import session
from lgdp.ledger.models import SentEmail
from lgdp.notify import Email, addresses, render, send_email
from lgdp.notify.recipients import NoContact

CTX = {
    "title": "Returns & deadlines\nthis week",
    "paragraphs": ["Dear <Edinburgh> team,", "Nothing is due."],
    "items": ["CLAS 2025-26"],
    "link": {"text": "Your folder for CLAS 2025-26", "url": "https://sharepoint.example.org/x?a=1&b=2"},
}


def _email(to: str = "data-returns@city-of-edinburgh.example.org", **kw) -> Email:
    r = render("notice", CTX)
    return Email(to=[to], subject=r.subject, text=r.text, html=r.html, **kw)


def _row(key: str) -> SentEmail:
    with session() as s:
        return s.scalars(select(SentEmail).where(SentEmail.dedupe_key == key)).one()


def test_render_escapes_html_not_text_and_subject_is_one_line() -> None:
    r = render("notice", CTX)
    assert r.subject == "Returns & deadlines this week"  # newline in a subject would inject headers
    assert "Dear <Edinburgh> team," in r.text and "&lt;" not in r.text
    assert "Dear &lt;Edinburgh&gt; team," in r.html
    assert '<a href="https://sharepoint.example.org/x?a=1&amp;b=2">Your folder for CLAS 2025-26</a>' in r.html
    assert "<h1>Returns &amp; deadlines\nthis week</h1>" in r.html
    assert "<ul>" in r.html and '<html lang="en-GB">' in r.html and "<title>Returns &amp; deadlines this week</title>" in r.html


def test_render_refuses_a_missing_variable() -> None:
    with pytest.raises(UndefinedError):
        render("notice", {"title": "x"})


def test_recipients_by_role_from_reference_data() -> None:
    assert addresses("S12000036") == ["data-returns@city-of-edinburgh.example.org"]
    assert addresses("S12000036", "senior") == ["head-of-performance@city-of-edinburgh.example.org"]
    with pytest.raises(NoContact, match="S12999999.yaml"):
        addresses("S12999999")


def test_smtp_sends_text_with_html_alternative_once(smtp, clean_ledger) -> None:
    email = _email(cc=["head-of-performance@city-of-edinburgh.example.org"],
                   attachments=[("feedback.csv", b"code,row\nX-E001,3\n", "text/csv")])
    first = send_email(email, dedupe_key="test:1", kind="test", council_code="S12000036")
    again = send_email(email, dedupe_key="test:1", kind="test", council_code="S12000036")
    assert first.status == "sent" and again.status == "already_sent"
    assert again.message_id == first.message_id
    [msg] = smtp.messages
    assert msg["Subject"] == "Returns & deadlines this week"
    assert msg["Message-ID"] == first.message_id and first.message_id.endswith("@lgdp.example.org>")
    assert msg["From"] == "Local Government Data Platform <returns-platform@lgdp.example.org>"
    assert msg["Cc"] == "head-of-performance@city-of-edinburgh.example.org"
    assert msg.get_content_type() == "multipart/mixed"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text.get_content().startswith("Returns & deadlines\nthis week\n")
    assert "Your folder for CLAS 2025-26: https://sharepoint.example.org/x?a=1&b=2" in text.get_content()
    assert "<h1>" in html.get_content()
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "feedback.csv" and att.get_content() == "code,row\nX-E001,3\n"
    # both recipients were on the envelope
    assert sorted(smtp.envelopes[0][1]) == ["data-returns@city-of-edinburgh.example.org",
                                            "head-of-performance@city-of-edinburgh.example.org"]
    row = _row("test:1")
    assert (row.status, row.attempts, row.transport, row.message_id) == ("sent", 1, "smtp", first.message_id)
    assert row.council_code == "S12000036" and row.sent_at is not None


@pytest.mark.parametrize("code", [451, 554])
def test_refused_send_is_recorded_raises_and_the_retry_delivers_one_copy(smtp, clean_ledger, code: int) -> None:
    smtp.fail_next(1, code)
    email = _email()
    with pytest.raises(Exception, match=str(code)):
        send_email(email, dedupe_key="test:fail", kind="test")
    row = _row("test:fail")
    assert (row.status, row.attempts) == ("failed", 1)
    assert str(code) in row.error and "Dear" not in row.error  # the reply, never the body
    assert smtp.messages == []
    assert send_email(email, dedupe_key="test:fail", kind="test").status == "sent"
    assert send_email(email, dedupe_key="test:fail", kind="test").status == "already_sent"
    assert len(smtp.messages) == 1
    row = _row("test:fail")
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)


def test_server_down_then_back(smtp, clean_ledger) -> None:
    smtp.stop()
    with pytest.raises(OSError):
        send_email(_email(), dedupe_key="test:down", kind="test")
    assert _row("test:down").status == "failed"
    smtp.start()
    assert send_email(_email(), dedupe_key="test:down", kind="test").status == "sent"
    assert len(smtp.messages) == 1


def test_two_workers_racing_on_one_key_send_one_copy(smtp, clean_ledger) -> None:
    results: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        try:
            results.append(send_email(_email(), dedupe_key="test:race", kind="test").status)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(results) == ["already_sent"] * 3 + ["sent"]
    assert len(smtp.messages) == 1


def test_graph_transport_through_msgraph_mail_hook(m365, clean_ledger, monkeypatch) -> None:
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    conn = m365.connection()
    conn["extra"]["from_email"] = "LGDP <returns-platform@lgdp.example.org>"
    monkeypatch.setenv("AIRFLOW_CONN_MSGRAPH_MAIL", json.dumps(conn))
    monkeypatch.setenv("LGDP_MAIL_TRANSPORT", "msgraph")
    KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_mail", None)
    email = _email(cc=["head-of-performance@city-of-edinburgh.example.org"],
                   attachments=[("feedback.csv", b"code,row\n", "text/csv")])
    first = send_email(email, dedupe_key="test:graph", kind="test")
    assert send_email(email, dedupe_key="test:graph", kind="test").status == "already_sent"
    [stored] = m365.mail()
    assert stored["from"] == "returns-platform@lgdp.example.org"
    msg = stored["message"]
    assert msg["subject"] == "Returns & deadlines this week"
    assert msg["toRecipients"] == [{"emailAddress": {"address": "data-returns@city-of-edinburgh.example.org"}}]
    assert msg["ccRecipients"] == [{"emailAddress": {"address": "head-of-performance@city-of-edinburgh.example.org"}}]
    assert msg["body"]["contentType"] == "HTML" and "<h1>" in msg["body"]["content"]
    assert [a["name"] for a in msg["attachments"]] == ["feedback.csv"]
    assert {"name": "x-lgdp-message-id", "value": first.message_id} in msg["internetMessageHeaders"]
    row = _row("test:graph")
    assert (row.status, row.transport) == ("sent", "msgraph")


def test_graph_outage_is_retried_not_lost(m365, clean_ledger, monkeypatch) -> None:
    from airflow.providers.microsoft.azure.hooks.msgraph import KiotaRequestAdapterHook

    conn = m365.connection()
    conn["extra"]["from_email"] = "returns-platform@lgdp.example.org"
    monkeypatch.setenv("AIRFLOW_CONN_MSGRAPH_MAIL", json.dumps(conn))
    monkeypatch.setenv("LGDP_MAIL_TRANSPORT", "msgraph")
    KiotaRequestAdapterHook.cached_request_adapters.pop("msgraph_mail", None)
    # 500 is not one of the statuses the Graph SDK's retry middleware retries (429/503/504 are).
    m365.inject_fault(status=500, path_contains="sendMail", count=1)
    with pytest.raises(Exception):
        send_email(_email(), dedupe_key="test:graph-outage", kind="test")
    assert _row("test:graph-outage").status == "failed" and m365.mail() == []
    assert send_email(_email(), dedupe_key="test:graph-outage", kind="test").status == "sent"
    assert len(m365.mail()) == 1
