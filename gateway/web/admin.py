"""The admin blueprint (`/admin`): login, the one page, its actions (POST, then a redirect with a
message). Thin views: forms check shape, `gateway.admin` does, words and gathers (docs/admin-page.md)."""
from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError

from .. import audit
from ..admin import actions, auth, panels
from .admin_forms import (SAVE_ACTIONS, ConfigureForm, LoginForm, NotifyForm, OpsConnectForm, PushForm, RetryJobForm,
                          missing_fields)
from .context import runtime
from .security import login_required

log = logging.getLogger("gateway.admin")

bp = Blueprint("admin", __name__, url_prefix="/admin")


def who() -> str:
    """The audit log's 'who': there is one admin password, so the client address tells sessions apart."""
    return f"admin@{request.remote_addr or 'unknown'}"


def _show(outcome, action: str):
    audit.record(runtime(), who(), action, outcome.detail)
    flash(outcome.message, "ok" if outcome.ok else "error")
    return redirect(url_for(".index"))


def form_problem(form) -> str:
    messages = [message for field_errors in form.errors.values() for message in field_errors]
    return " ".join(messages) or "The form was not complete."


@bp.app_template_filter("relative")
def _relative(value):
    return panels.relative(value, time.time())


@bp.app_template_filter("duration")
def _duration(value):
    return panels.duration(value)


@bp.app_template_filter("clock")
def _clock(value):
    return panels.clock(value)


@bp.errorhandler(CSRFError)
def csrf_error(exc):
    # flask-wtf says which check failed (token missing, expired, or the HTTPS referrer check).
    return render_template("admin/problem.html", title="Form expired", message=(
        f"The form could not be accepted ({exc.description.rstrip('.')}): its security token was missing, "
        "had expired or came from another site. Go back, reload the page and try again."
    )), 400


# -- login ------------------------------------------------------------------------------------
@bp.route("/login", methods=["GET", "POST"])
def login():
    rt = runtime()
    form = LoginForm()
    if request.method == "GET":
        form.next.data = auth.safe_next(request.args.get("next"), "")
        return render_template("admin/login.html", form=form)

    address = request.remote_addr or "unknown"
    attempt = auth.start_attempt(rt, address)
    throttle = attempt.throttle
    if throttle.blocked:
        auth.withdraw(rt, attempt)  # refused unchecked: not a failure, so obeying Retry-After works
        if throttle.everyone:
            log.warning("admin login refused: too many failed logins from every address together")
            message = (f"Too many failed logins to this gateway just now, from many addresses. "
                       f"Wait {throttle.retry_after} seconds, then try again.")
        else:
            log.warning("admin login refused: too many failures from %s", address)
            message = f"Too many failed logins from your address. Wait {throttle.retry_after} seconds, then try again."
        response = current_app.make_response((render_template("admin/login.html", form=form, error=message), 429))
        response.headers["Retry-After"] = str(throttle.retry_after)
        return response

    if form.validate_on_submit() and auth.check_password(rt, form.password.data):
        auth.withdraw(rt, attempt)
        target = auth.safe_next(form.next.data, url_for(".index"))
        auth.open_session(rt, session, current_app.secret_key)  # fresh: nothing from before survives
        audit.record(rt, who(), "login", "logged in")
        return redirect(target)

    log.warning("admin login failed from %s", address)
    return render_template("admin/login.html", form=form, error=auth.WRONG_PASSWORD), 401


@bp.post("/logout")
@login_required
def logout():
    rt = runtime()
    audit.record(rt, who(), "logout", "logged out")
    auth.close_session(rt, session, current_app.permanent_session_lifetime.total_seconds())
    flash("You are logged out.", "ok")
    return redirect(url_for(".login"))


# -- the page -----------------------------------------------------------------------------------
def _page(configure_form: ConfigureForm, status: int = 200):
    rt = runtime()
    base_url = (current_app.config.get("GATEWAY_PUBLIC_URL") or request.url_root).rstrip("/") + "/"
    page = panels.gather(rt, base_url)
    if request.method == "GET" and page.connection.ok and isinstance(page.connection.data, dict):
        current = page.connection.data
        # Only what is not a credential is filled in again: never the client id, secret or token.
        if current.get("data_center"):
            configure_form.data_center.data = current["data_center"]
        if current.get("account_id"):
            configure_form.account_id.data = str(current["account_id"])
        if current.get("modules"):
            configure_form.modules.data = [str(m).lower() for m in current["modules"]]
    return render_template(
        "admin/index.html",
        page=page,
        attention=panels.attention(page),
        webhook_url_rows=panels.url_rows(page.webhook_urls.data) if page.webhook_urls.ok else [],
        configure_form=configure_form,
        push_form=PushForm(formdata=None),
        ops_form=OpsConnectForm(formdata=None),
        events_url=base_url + "api/v1/events",
        zoho_connect_url=url_for("zoho_oauth.connect"),
        now=time.time(),
    ), status


@bp.route("/", methods=["GET", "POST"])
@login_required
def index():
    form = ConfigureForm()
    if request.method == "GET":
        return _page(form)
    action = request.form.get("action", "connect")
    if action not in SAVE_ACTIONS:
        action = "connect"
    valid = form.validate_on_submit()
    problems = ([] if valid else [form_problem(form)]) + missing_fields(action, form)
    if problems:
        flash("Nothing was saved: " + " ".join(problems), "error")
        return _page(form, 400)
    rt = runtime()
    fields = dict(
        data_center=form.data_center.data,
        client_id=(form.client_id.data or "").strip(),
        client_secret=(form.client_secret.data or "").strip(),
        account_id=form.account_id.data.strip(),
        redirect_uri=(form.redirect_uri.data or "").strip() or None,
        modules=form.modules.data,
    )
    if action == "update":
        return _show(actions.update(rt, account_id=fields["account_id"], modules=fields["modules"]), "update zoho settings")
    if action == "redirect":
        # Saved here, then the admin follows a link to /admin/zoho/connect: the CSP's
        # `form-action 'self'` rightly stops a form POST from being redirected to Zoho.
        outcome = actions.save_pending(rt, **fields)
        audit.record(rt, who(), "connect through zoho", outcome.detail)
        flash(outcome.message if not outcome.ok else "Saved. Now press “Continue at Zoho” to allow access there.",
              "ok" if outcome.ok else "error")
        return redirect(url_for(".index", _anchor="configure"))
    return _show(actions.configure(rt, grant_token=form.grant_token.data.strip(), **fields), "configure")


# -- actions ------------------------------------------------------------------------------------
def _refused(message: str):
    """A form the admin must correct: the page again, with the reason, as a 400."""
    flash(message, "error")
    return _page(ConfigureForm(formdata=None), 400)


@bp.post("/jobs/retry")
@login_required
def retry_job():
    form = RetryJobForm()
    if not form.validate_on_submit():
        return _refused("Nothing retried: " + form_problem(form))
    return _show(actions.retry_job(runtime(), form.job_id.data), "retry job")


@bp.post("/jobs/retry-all")
@login_required
def retry_all():
    return _show(actions.retry_all(runtime()), "retry all dead jobs")


@bp.post("/deliveries/retry-failed")
@login_required
def retry_failed_deliveries():
    return _show(actions.retry_failed_deliveries(runtime()), "retry failed deliveries")


@bp.post("/push")
@login_required
def push():
    form = PushForm()
    if not form.validate_on_submit():
        return _refused("Nothing pushed: " + form_problem(form))
    return _show(actions.push(runtime(), form.kind.data, form.record_id.data), "push")


@bp.post("/secrets/webhook/rotate")
@login_required
def rotate_webhook_secret():
    return _show(actions.rotate_webhook_secret(runtime()), "rotate webhook secret")


@bp.post("/secrets/events/rotate")
@login_required
def rotate_events_secret():
    return _show(actions.rotate_events_secret(runtime()), "rotate events secret")


@bp.post("/secrets/webhook/revoke-previous", defaults={"which": "webhook"})
@bp.post("/secrets/events/revoke-previous", defaults={"which": "events"})
@login_required
def revoke_previous_secrets(which):
    return _show(actions.revoke_previous_secrets(runtime(), which), f"end {which} secrets' grace")


@bp.post("/notify")
@login_required
def notify():
    form = NotifyForm()
    if not form.validate_on_submit():
        flash("Nothing changed: " + form_problem(form), "error")
        return redirect(url_for(".index"))
    return _show(actions.set_notify(runtime(), form.enabled.data == "on", request_root=request.url_root), "notification api")


@bp.post("/ops/connect")
@login_required
def connect_ops():
    form = OpsConnectForm()
    if not form.validate_on_submit():
        return _refused("Nothing saved: " + form_problem(form))
    return _show(actions.configure_ops(runtime(), url=form.url.data.strip(), client_id=form.ops_client_id.data.strip(),
                                       client_secret=form.ops_client_secret.data.strip()), "connect onprintshop")


@bp.post("/disconnect")
@login_required
def disconnect():
    return _show(actions.disconnect(runtime()), "disconnect")
