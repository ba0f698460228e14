"""The Flask application factory: settings in, a WSGI app with the page, the API, health and
metrics out. Every error becomes a short message (JSON for the API, the page for people), never
a traceback."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, jsonify, make_response, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from summarizer.budget import Gate
from webapp.api import api
from webapp.backends import make_backend
from webapp.errors import WebError, with_retry_after
from webapp.feedback import FeedbackStore
from webapp.github import GitHubClient
from webapp.metrics import Metrics
from webapp.pages import pages, render_page
from webapp.ratelimit import RateLimiter
from webapp.samples import load_samples
from webapp.security import add_security_headers, csrf_token
from webapp.services import EXTENSION, Services, services
from webapp.settings import Settings

log = logging.getLogger(__name__)
_KINDS = {404: "not_found", 405: "method", 413: "too_large"}  # error metric labels of HTTP errors


def create_app(settings: Settings | None = None) -> Flask:
    """The app for `settings` (default: from the environment). The embedded model is loaded and
    its bundle checked here, so a bad bundle stops the start with a UserError."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=settings.max_content_length,
                      MAX_FORM_MEMORY_SIZE=settings.max_content_length,
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keys in the order the API documents
    backend = make_backend(settings)
    metrics = Metrics()
    if backend.mode == "embedded":
        metrics.model(backend.health(), backend.mode)
    app.extensions[EXTENSION] = Services(
        settings=settings, backend=backend,
        github=GitHubClient(settings.github_api_url, settings.github_token, settings.timeout),
        feedback=FeedbackStore(settings.feedback_db, settings.feedback_max_mb),
        samples=load_samples(settings.samples_file), metrics=metrics, gate=Gate(settings.max_in_flight),
        feedback_limit=RateLimiter(settings.feedback_per_minute))
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.register_blueprint(pages)
    app.register_blueprint(api)
    app.add_url_rule("/healthz", view_func=healthz)
    app.add_url_rule("/metrics", view_func=prometheus_metrics)
    app.before_request(_start_clock)
    app.after_request(_finish)
    app.register_error_handler(WebError, _web_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def healthz() -> ResponseReturnValue:
    """200 with the model version when the model answers, 503 with the reason when it does not."""
    app = services()
    try:
        version = app.backend.health()
    except WebError as error:
        return jsonify({"status": "unavailable", "error": error.message}), 503
    app.metrics.model(version, app.backend.mode)
    return jsonify({"status": "ok", "model_version": version, "mode": app.backend.mode})


def prometheus_metrics() -> Response:
    return Response(services().metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


def _start_clock() -> None:
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule else "unmatched"  # not the path: bounded labels
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    services().metrics.request(route, request.method, response.status_code, seconds)
    return add_security_headers(response)


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def _answer(message: str, status: int, kind: str) -> Response:
    services().metrics.error(kind)
    if _wants_json():
        return make_response(jsonify({"error": message}), status)
    if status in (404, 405):
        return make_response(render_template("error.html", message=message, status=status), status)
    return make_response(render_page(error=message, status=status))


def _web_error(error: WebError) -> Response:
    response = _answer(error.message, error.status, error.kind)
    return with_retry_after(response, error)


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 413:
        limit = services().settings.max_content_length
        message = f"the request is too large: the limit is {limit:,} bytes; send a shorter issue"
    elif status == 404:
        message = "there is nothing at this address"
    elif status == 405:
        message = f"{request.method} is not accepted here"
    else:
        message = f"the request could not be handled ({status} {error.name})"
    response = _answer(message, status, _KINDS.get(status, "http"))
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _unexpected_error(error: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.path, exc_info=error)
    return _answer("something went wrong on our side; the server's log says what", 500, "internal")
