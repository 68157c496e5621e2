"""The ``smtp`` fixture: a real SMTP server (aiosmtpd) on a free port, and the Airflow connection to it.

Registered by ``pytest_plugins`` in ``conftest.py``. The server keeps every message it accepts as a
parsed ``email.message.EmailMessage`` (``smtp.messages``), can refuse the next N messages with a
4xx/5xx reply (``smtp.fail_next(2, 451)``) and can be stopped and started again on the same port
(an outage). ``AIRFLOW_CONN_SMTP_DEFAULT`` points the smtp provider's hook at it for the test's
duration: plain SMTP (``disable_ssl``/``disable_tls`` as JSON booleans), a fake sender.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest

SENDER = "Local Government Data Platform <returns-platform@lgdp.example.org>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class _Handler:
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.failures:
                code = self.failures.pop(0)
                return f"{code} {'4.3.0 Mail system busy, try again later' if code < 500 else '5.3.0 Message refused'} (test)"
            raw = (envelope.original_content or envelope.content).replace(b"\r\n", b"\n")  # as a client shows it
            msg = BytesParser(policy=policy.default).parsebytes(raw)
            self.messages.append(msg)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class SmtpServer:
    """A running aiosmtpd server and what it received."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.handler = _Handler()
        self._controller: Any = None

    def start(self) -> SmtpServer:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self.handler, hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused) until ``start()``: an outage."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        with self.handler.lock:
            return list(self.handler.envelopes)

    def fail_next(self, n: int = 1, code: int = 451) -> None:
        """Refuse the next ``n`` messages at DATA with ``code`` (4xx temporary, 5xx permanent)."""
        with self.handler.lock:
            self.handler.failures.extend([code] * n)

    def clear(self) -> None:
        with self.handler.lock:
            self.handler.messages.clear()
            self.handler.envelopes.clear()

    def connection(self) -> dict[str, Any]:
        return {
            "conn_type": "smtp",
            "host": self.host,
            "port": self.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": SENDER, "timeout": 10, "retry_limit": 0},
        }

    def connection_uri(self) -> str:
        return json.dumps(self.connection())


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.connection_uri())
    monkeypatch.delenv("LGDP_MAIL_TRANSPORT", raising=False)
    monkeypatch.delenv("LGDP_SMTP_CONN_ID", raising=False)
    monkeypatch.delenv("LGDP_MAIL_FROM", raising=False)
    try:
        yield server
    finally:
        server.stop()
