"""The simulator's workflow webhooks and a salesperson's edits: `edit_record` changes a record as a
person would, then runs the module's webhook (form data with merge-field parameters and custom
headers, POSTed over HTTP) and the Notification API callbacks, as Zoho's "on edit" workflow does."""
from __future__ import annotations

import re

import requests

from .times import zoho_time

MERGE_FIELD = re.compile(r"\$\{(\w+)\.([^}]+)\}")
ID_LABELS = {"Contacts": "Contact Id", "Deals": "Deal Id", "Accounts": "Account Id"}
ANSWER_KEPT = 300  # characters of the gateway's answer kept in the log
LOG_KEPT = 50
TIMEOUT = 30


def api_name(module: str, label: str) -> str:
    """A merge field's label as the API field it shows: "Modified Time" → Modified_Time, "Deal Id" → id."""
    label = label.strip()
    return "id" if label == ID_LABELS.get(module) else label.replace(" ", "_")


def render(template: str, module: str, record: dict) -> str:
    """A webhook parameter's value: its `${Module.Field Label}` merge fields filled from the record
    (a lookup shows its name, else its id; an empty field is empty)."""
    def value(match):
        if match.group(1) != module:
            return ""
        found = record.get(api_name(module, match.group(2)))
        if isinstance(found, dict):
            found = found.get("name") or found.get("id")
        return "" if found is None else str(found)

    return MERGE_FIELD.sub(value, template)


def post_form(url: str, form: dict, headers: dict) -> tuple[int, str]:
    answer = requests.post(url, data=form, headers=headers, timeout=TIMEOUT)
    return answer.status_code, answer.text


def install(sim) -> None:
    sim.webhooks = {}     # module -> {"url", "params": {name: template}, "headers": {name: value}}
    sim.webhook_log = []  # newest last: {"at", "module", "record_id", "url", "status", "answer"}
    sim.webhook_transport = post_form

    def set_webhook(module: str, url: str, params: dict, headers: dict | None = None) -> None:
        """Set up the module's webhook and the workflow rule that calls it when a record is edited."""
        with sim.lock:
            sim.webhooks[module] = {"url": url, "params": dict(params), "headers": dict(headers or {})}

    def edit_record(module: str, record_id: str, **fields) -> list[dict]:
        """A salesperson's edit: the record changes (Modified_Time now), then the workflow's webhook
        and the Notification API are called; returns the webhook calls made, as logged."""
        with sim.lock:
            record = sim.records.get(module, {}).get(str(record_id))
            if record is None:
                raise KeyError(f"{module} has no record {record_id}")
            record.update(fields)
            record["Modified_Time"] = zoho_time(sim.now())
            edited = dict(record)
            hook = sim.webhooks.get(module)
        calls = []
        if hook is not None:
            form = {name: render(template, module, edited) for name, template in hook["params"].items()}
            try:
                status, answer = sim.webhook_transport(hook["url"], form, hook["headers"])
            except requests.RequestException as exc:
                status, answer = None, f"not delivered ({exc.__class__.__name__})"
            entry = {"at": sim.now(), "module": module, "record_id": str(record_id), "url": hook["url"],
                     "status": status, "answer": answer[:ANSWER_KEPT]}
            with sim.lock:
                sim.webhook_log.append(entry)
                del sim.webhook_log[:-LOG_KEPT]
            calls.append(entry)
        try:
            sim.fire_notification(module, [str(record_id)])
        except requests.RequestException:
            pass  # Zoho does not retry a callback nobody answered, and neither does the simulator
        return calls

    sim.set_webhook = set_webhook
    sim.edit_record = edit_record
