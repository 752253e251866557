"""What the HTML pages share: templates, escaping, redirects and form parsing."""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse

from instruct_env.feedback.store import MAX_ID

__all__ = ["TEMPLATES", "escape", "form_id", "read_form", "redirect", "script", "template"]

TEMPLATES = Path(__file__).parent.parent / "templates"


@cache
def template(name: str) -> Template:
    """The page template ``name`` from :data:`TEMPLATES` (read once)."""
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


@cache
def script() -> str:
    """The pages' one inline script: the keyboard shortcuts."""
    return (TEMPLATES / "shortcuts.js").read_text(encoding="utf-8")


def escape(text: Any) -> str:
    """``text`` as HTML text or attribute value (quotes escaped too)."""
    return html.escape(str(text), quote=True)


def redirect(path: str, **params: str) -> RedirectResponse:
    """A 303 to ``path``, with the non-empty ``params`` as its query string."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(path + ("?" + query if query else ""), status_code=303)


async def read_form(request: Request) -> dict[str, str]:
    """Parse an ``application/x-www-form-urlencoded`` body (no python-multipart needed)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}


def form_id(form: Mapping[str, str], name: str) -> int:
    """An id or count from a page form: ASCII digits for a 64-bit integer, else ``ValueError``."""
    value = form.get(name, "").strip()
    if not (value.isascii() and value.isdigit() and int(value) <= MAX_ID):
        raise ValueError(f"{name} must be a whole number from 0 to {MAX_ID}; got {value!r:.40}.")
    return int(value)
