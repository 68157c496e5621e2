"""Server-side rendering of the pages with the Jinja templates in ``templates/`` (autoescaped)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from lgdp.periods import LONDON

STATUS_LABELS = {
    "expected": "expected",
    "received": "received",
    "processing": "processing",
    "rejected": "rejected",
    "queries": "queries",
    "accepted": "accepted",
    "not_received": "not received",
}


def _when(value: Any, fmt: str = "%d %b %Y") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value) if "T" in value or " " in value else dt.date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        value = value.astimezone(LONDON) if value.tzinfo else value
    return value.strftime(fmt)


def _month(label: str) -> str:
    return dt.date(int(label[:4]), int(label[5:7]), 1).strftime("%b %Y")


def _heat(n: int, top: int) -> int:
    """Heat level 0-5 for a count against the highest count on the page."""
    if n <= 0 or top <= 0:
        return 0
    return max(1, min(5, round(5 * n / top)))


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("lgdp.ui", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["month"] = _month
    env.filters["status_label"] = lambda s: STATUS_LABELS.get(s, s)
    env.globals["heat"] = _heat
    env.globals["STATUS_LABELS"] = STATUS_LABELS
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
