"""Rendering an email from its three Jinja templates: subject, plain text and HTML.

``<name>.subject.j2``, ``<name>.txt.j2`` and ``<name>.html.j2`` live in ``templates/``. HTML is
autoescaped (a council name or an issue message can never inject markup); the plain text is not
(it would show ``&amp;``). ``StrictUndefined`` turns a missing variable into an error at render
time instead of an email with a blank where the due date should be.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=4)
def _env(html: bool, directory: str = str(TEMPLATES)) -> Environment:
    env = Environment(
        loader=FileSystemLoader(directory),
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["plural"] = plural
    return env


def plural(n: int, singular: str, many: str | None = None) -> str:
    """``3|plural('error')`` -> '3 errors'; ``1|plural('query', 'queries')`` -> '1 query'."""
    return f"{n} {singular if n == 1 else (many or singular + 's')}"


def one_line(text: str) -> str:
    """A subject is one header line: newlines (header injection) and runs of spaces collapse."""
    return " ".join(text.split())


def render(name: str, context: dict[str, Any]) -> Rendered:
    """Render ``<name>.subject.j2``, ``<name>.txt.j2`` and ``<name>.html.j2`` with ``context``.

    The rendered subject is also given to the body templates as ``subject`` (the HTML title).
    """
    subject = one_line(_env(False).get_template(f"{name}.subject.j2").render(context))
    ctx = {**context, "subject": subject}
    text = _env(False).get_template(f"{name}.txt.j2").render(ctx)
    html = _env(True).get_template(f"{name}.html.j2").render(ctx)
    return Rendered(subject=subject, text=text.strip() + "\n", html=html)
