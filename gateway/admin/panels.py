"""What the admin page shows, each panel read on its own (one that cannot answer says so and the
rest of the page still works), and the time formatting the templates use (pure)."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from .. import audit, ops
from ..inbound import notify, reports, secrets
from ..outbound import events, queue
from ..zoho import connection, gate
from . import activity

log = logging.getLogger("gateway.admin")

WEBHOOK_HEADER = "X-Webhook-Token"

# The body parameters of Zoho's workflow webhooks, with the merge field to pick
# in Zoho's webhook form and where the gateway writes the value.
WEBHOOK_PARAMETERS = (
    ("contacts", "id", "Contacts › Contact Id", "(link)"),
    ("contacts", "email", "Contacts › Email", "finds the customer; written to customers_email_address only with "
                                             "GATEWAY_WRITE_BACK_EMAIL=1"),
    ("contacts", "first_name", "Contacts › First Name", "customers_firstname"),
    ("contacts", "last_name", "Contacts › Last Name", "customers_lastname"),
    ("contacts", "phone", "Contacts › Phone", "customers_telephone"),
    ("contacts", "modified_time", "Contacts › Modified Time", "(ordering)"),
    ("deals", "id", "Deals › Deal Id", "(link)"),
    ("deals", "stage", "Deals › Stage", "orders_status_id and a new status history row"),
    ("deals", "payment_status", "a Deals picklist Paid / Unpaid", "payment_status"),
    ("deals", "modified_time", "Deals › Modified Time", "(ordering)"),
    ("both", "ops_id (optional)", "a custom field holding the OnPrintShop id", "(link)"),
)


def merge_fields(endpoint: str) -> dict[str, str]:
    """{parameter: Zoho merge field such as "${Deals.Stage}"} of one webhook, from the table above
    (the rows whose merge field is one of the module's own)."""
    fields = {}
    for where, parameter, merge, _target in WEBHOOK_PARAMETERS:
        module, arrow, label = merge.partition(" › ")
        if where == endpoint and arrow:
            fields[parameter] = f"${{{module}.{label}}}"
    return fields


@dataclass
class Panel:
    """One part of the page: its data, or a plain sentence saying why it is missing."""

    data: object = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def read_panel(what: str, func, *args, **kwargs) -> Panel:
    """`func(*args)`; any failure becomes the panel's `problem`."""
    try:
        return Panel(func(*args, **kwargs))
    except Exception as exc:  # one broken part must not take the whole page down
        log.warning("admin page: %s could not be read (%s)", what, exc.__class__.__name__, exc_info=True)
        return Panel(None, f"{what} could not be read just now ({exc.__class__.__name__}); the log has the details")


@dataclass
class Page:
    connection: Panel
    queue: Panel
    dead_jobs: Panel
    calls_today: Panel
    pushes_today: Panel
    inbox: Panel
    inbox_pending: Panel
    inbox_failed: Panel
    webhook_secrets: Panel
    webhook_urls: Panel
    events_secrets: Panel
    notify_enabled: Panel
    notify_channel: Panel
    audit: Panel
    activity: Panel = field(default_factory=Panel)
    onprintshop: Panel = field(default_factory=Panel)
    ops_connection: Panel | None = None  # the saved API client, when the backend has one to save
    parameters: tuple = field(default=WEBHOOK_PARAMETERS)
    header_name: str = WEBHOOK_HEADER


def gather(rt, base_url: str) -> Page:
    return Page(
        connection=read_panel("The Zoho connection", connection.status, rt),
        queue=read_panel("The push queue", queue.status, rt),
        dead_jobs=read_panel("The dead jobs", queue.dead_jobs, rt, limit=50),
        calls_today=read_panel("Zoho calls today", gate.count_last_day, rt.store, "calls"),
        pushes_today=read_panel("Pushes today", gate.count_last_day, rt.store, "pushes"),
        inbox=read_panel("The latest deliveries", reports.recent, rt, limit=50),
        inbox_pending=read_panel("Pending deliveries", reports.pending_count, rt),
        inbox_failed=read_panel("Failed deliveries", reports.failed_count, rt),
        webhook_secrets=read_panel("The webhook secret", secrets.webhook_secrets, rt),
        webhook_urls=read_panel("The webhook URLs", secrets.webhook_urls, base_url),
        events_secrets=read_panel("The events secret", events.events_secrets, rt),
        notify_enabled=read_panel("Notification API mode", notify.enabled, rt),
        notify_channel=read_panel("The Notification API channel", notify.channel_status, rt),
        audit=read_panel("The audit log", audit.recent, rt, limit=20),
        activity=read_panel("The activity of the last 24 hours", activity.last_day, rt),
        onprintshop=read_panel("OnPrintShop", lambda: rt.ops.report()),
        ops_connection=read_panel("The OnPrintShop API client", ops.api_connection, rt) if _connectable(rt) else None,
    )


def _connectable(rt) -> bool:
    try:
        return bool(rt.ops.connectable)
    except Exception:  # a backend that cannot even be opened says so in its own panel
        return False


def attention(page: Page) -> list[tuple[str, str]]:
    """What needs the admin, most urgent first, as (anchor on the page, sentence); empty: all is well."""
    items: list[tuple[str, str]] = []
    connection = page.connection.data if page.connection.ok and isinstance(page.connection.data, dict) else {}
    state = connection.get("state")
    if state == "needs_reauthorization":
        items.append(("zoho", "Zoho needs re-authorization: pushes wait until you connect again."))
    elif state == "not_configured":
        items.append(("configure", "Zoho is not connected yet: fill in the form to connect."))
    store = page.onprintshop.data if page.onprintshop.ok and isinstance(page.onprintshop.data, dict) else {}
    if store.get("problem"):
        items.append(("onprintshop", store["problem"] + "."))
    queue = page.queue.data if page.queue.ok and isinstance(page.queue.data, dict) else {}
    if queue.get("paused"):
        items.append(("queue", "Pushes are paused: " + (queue.get("paused_reason") or "see the queue.")))
    dead = queue.get("dead") or 0
    if dead:
        items.append(("dead-jobs", f"{dead} push{'es' if dead != 1 else ''} failed for good: see the dead jobs."))
    if page.inbox_pending.ok and page.inbox_pending.data:
        count = page.inbox_pending.data
        items.append(("inbound", f"{count} update{'s' if count != 1 else ''} from Zoho waiting for the OnPrintShop database."))
    if page.inbox_failed.ok and page.inbox_failed.data:
        count = page.inbox_failed.data
        items.append(("deliveries", f"{count} update{'s' if count != 1 else ''} from Zoho refused by OnPrintShop: "
                                    "see the latest deliveries."))
    for panel in (page.connection, page.queue, page.inbox, page.webhook_secrets):
        if not panel.ok:
            items.append(("status", panel.problem))
    return items


def url_rows(urls) -> list[tuple[str, str]]:
    """Webhook URLs as (name, url) rows, whether given as a mapping or a list of URLs."""
    if not urls:
        return []
    if isinstance(urls, dict):
        return [(str(name), str(url)) for name, url in urls.items()]
    return [(str(url).rstrip("/").rsplit("/", 1)[-1], str(url)) for url in urls]


# -- time, for people -------------------------------------------------------------------------
def _epoch(value) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def duration(seconds) -> str:
    """'45 s', '12 min', '3 h 5 min', '2 d 4 h'."""
    if seconds is None:
        return "—"
    seconds = int(abs(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def relative(value, now: float) -> str:
    """'in 42 min' or '5 min ago' (or '—' when there is no time)."""
    epoch = _epoch(value)
    if epoch is None:
        return "—"
    delta = epoch - now
    if abs(delta) < 1:
        return "just now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def clock(value) -> str:
    """'2026-11-27 08:30:12 UTC' (or the value as given when it is not a time)."""
    epoch = _epoch(value)
    if epoch is None:
        return "—" if value in (None, "") else str(value)
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

