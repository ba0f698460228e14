"""Security headers on every response, and CSRF protection.

The page's forms carry a per-session token that must come back with every POST. The JSON API
needs none: it accepts only `Content-Type: application/json`, which a page on another site cannot
send without the browser asking this app first (CORS), and this app never says yes."""

from __future__ import annotations

import hmac
import secrets

from flask import Response, request, session

from webapp.errors import WebError

CSRF_FIELD = "csrf_token"
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def add_security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def csrf_token() -> str:
    """This session's token for the forms (made on first use)."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def check_csrf() -> None:
    """Refuse a form POST whose token is missing or not this session's."""
    expected = session.get(CSRF_FIELD)
    sent = request.form.get(CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(str(expected), sent):
        raise WebError("this form has expired or did not come from this page; reload the page and try again",
                       400, "csrf")


def require_json() -> None:
    """API requests must say they are JSON (see the module's note on CSRF)."""
    if not request.is_json:
        raise WebError("send JSON with the header Content-Type: application/json", 415)
