"""The "Simulated Zoho" page (`/admin/simulator`, development only): connect the gateway to the
simulator, see the Contacts and Deals it received, change one as a salesperson would (the simulator
then calls the gateway's workflow webhook over HTTP), and the store's orders and customers."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError

from .. import audit, ops
from ..admin import panels, simulated
from ..inbound import secrets
from ..zoho import connection
from .admin import csrf_error, form_problem, who
from .admin_forms import PhoneForm, StageForm
from .context import runtime
from .security import login_required
from .simulator_api import served_at, simulator

bp = Blueprint("simulated_zoho", __name__, url_prefix="/admin/simulator")
bp.register_error_handler(CSRFError, csrf_error)


@bp.app_context_processor
def _offer():
    """Tells the status page to offer the simulator: this blueprint exists only in development."""
    return {"simulated_zoho": True}


@bp.get("/")
@login_required
def index():
    rt = runtime()
    sim = simulator()
    webhooks, webhook_log = simulated.webhooks_sent(sim)
    return render_template(
        "admin/simulator.html",
        in_use=simulated.in_use(rt),
        connection=panels.read_panel("The Zoho connection", connection.status, rt),
        crm=simulated.crm_lists(sim),
        store=_store(rt),
        demo_store=ops.is_embedded_demo(rt.ops, rt.instance_path),
        stages=simulated.status_names(rt),
        webhooks=webhooks,
        webhook_log=webhook_log,
    )


def _store(rt) -> panels.Panel:
    try:
        return panels.Panel(simulated.store_lists(rt))
    except ops.OpsError as exc:  # no store yet, or away: said on the page, no traceback in the log
        return panels.Panel(None, f"The store cannot be read now: {exc}")


@bp.post("/connect")
@login_required
def connect():
    rt = runtime()
    base = secrets.base_url(rt, request.url_root)
    outcome = simulated.connect(rt, simulator(), served_at(base), base)
    audit.record(rt, who(), "connect simulated zoho", outcome.detail)
    flash(outcome.message, "ok" if outcome.ok else "error")
    return redirect(url_for("admin.index"))


def _record(module: str, record_id: str) -> dict:
    found = next((r for r in simulator().records_of(module) if r["id"] == record_id), None)
    if found is None:
        abort(404)
    return found


def _edited(module: str, record_id: str, what: str, **fields):
    outcome = simulated.edit(simulator(), module, record_id, what, **fields)
    audit.record(runtime(), who(), "simulated zoho edit", outcome.detail)
    flash(outcome.message, "ok" if outcome.ok else "error")
    return redirect(url_for(".index", _anchor=module.lower()))


@bp.post("/deals/<record_id>")
@login_required
def change_stage(record_id):
    deal = _record("Deals", record_id)
    form = StageForm()
    form.stage.choices = sorted(set(simulated.status_names(runtime())) | ({deal["Stage"]} if deal.get("Stage") else set()))
    if not form.validate_on_submit():
        flash("Nothing changed: " + form_problem(form), "error")
        return redirect(url_for(".index", _anchor="deals"))
    return _edited("Deals", record_id, f"{deal.get('Deal_Name')}: Stage is now {form.stage.data}", Stage=form.stage.data)


@bp.post("/contacts/<record_id>")
@login_required
def change_phone(record_id):
    contact = _record("Contacts", record_id)
    form = PhoneForm()
    if not form.validate_on_submit():
        flash("Nothing changed: " + form_problem(form), "error")
        return redirect(url_for(".index", _anchor="contacts"))
    phone = (form.phone.data or "").strip() or None
    return _edited("Contacts", record_id, f"{simulated.contact_name(contact)}: Phone is now {phone or 'empty'}", Phone=phone)
