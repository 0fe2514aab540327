"""The admin page's forms (Flask-WTF: every one carries the CSRF token); they check shape only."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, PasswordField, SelectChoice, SelectField, SelectMultipleField, StringField
from wtforms import widgets
from wtforms.validators import URL, DataRequired, InputRequired, Length, NumberRange, Optional, Regexp

from ..zoho.datacenters import DATA_CENTER_NAMES

DATA_CENTER_LABELS = [SelectChoice(code, f"{code}: {name}") for code, name in DATA_CENTER_NAMES.items()]
MODULE_CHOICES = [SelectChoice("contacts", "Contacts (customers)"), SelectChoice("deals", "Deals (orders)")]


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class LoginForm(FlaskForm):
    password = PasswordField("Password", validators=[DataRequired(message="Enter the admin password."), Length(max=500)])
    next = HiddenField()


class ConfigureForm(FlaskForm):
    """The Zoho form. Which fields are needed depends on the button pressed (see `missing_fields`)."""

    data_center = SelectField("Data center", choices=DATA_CENTER_LABELS, default="us")
    client_id = StringField("Client ID", validators=[Optional(), Length(max=200)])
    client_secret = PasswordField("Client Secret", validators=[Optional(), Length(max=200)])
    grant_token = PasswordField("Grant Token", validators=[Optional(), Length(max=500)])
    account_id = StringField(
        "Zoho Account ID",
        validators=[
            DataRequired(message="Enter the id of the Zoho Account record that synced records belong to."),
            Regexp(r"^\s*\d{5,30}\s*$", message="The Account ID is the long number at the end of the Account's URL in Zoho CRM."),
        ],
    )
    redirect_uri = StringField(
        "Redirect URI (optional)",
        validators=[Optional(), URL(require_tld=False, message="Give a full URL (https://…) or leave the Redirect URI empty."), Length(max=500)],
    )
    modules = MultiCheckboxField(
        "Modules to sync",
        choices=MODULE_CHOICES,
        default=["contacts", "deals"],
        validators=[DataRequired(message="Choose at least one module to sync.")],
    )


# The configuration form's buttons: exchange a pasted grant token, start the redirect flow at
# Zoho, or change only the Account ID and modules of the stored connection.
SAVE_ACTIONS = ("connect", "redirect", "update")


def missing_fields(action: str, form: ConfigureForm) -> list[str]:
    """What the chosen button needs that the form lacks, as sentences (pure; empty when complete)."""
    problems = []
    if action in ("connect", "redirect") and not (form.client_id.data or "").strip():
        problems.append("Enter the Client ID from Zoho's API Console.")
    if action == "connect" and not (form.grant_token.data or "").strip():
        problems.append("Enter a fresh grant token (it is valid for a few minutes only), or use “Connect through Zoho”.")
    return problems


MAX_ID = 2 ** 63 - 1  # the largest id a database column holds


class RetryJobForm(FlaskForm):
    job_id = IntegerField("Job", validators=[InputRequired(message="Which dead job?"),
                                             NumberRange(min=1, max=MAX_ID, message="Job ids are whole numbers from 1.")])


class PushForm(FlaskForm):
    kind = SelectField("What", choices=[SelectChoice("customers", "Customer"), SelectChoice("orders", "Order")])
    record_id = IntegerField(
        "OnPrintShop id",
        validators=[InputRequired(message="Enter the OnPrintShop id to push."),
                    NumberRange(min=1, max=MAX_ID, message=f"Ids are whole numbers from 1 to {MAX_ID}.")],
    )


class NotifyForm(FlaskForm):
    enabled = SelectField("Notification API", choices=[SelectChoice("on"), SelectChoice("off")])


class StageForm(FlaskForm):
    """A salesperson's Stage change on the Simulated Zoho page; the picklist is the store's statuses."""

    stage = SelectField("Stage", validators=[DataRequired(message="Choose a stage.")])


class PhoneForm(FlaskForm):
    phone = StringField("Phone", validators=[Optional(), Length(max=30, message="A phone number has at most 30 characters."),
                                             Regexp(r"^[0-9+()./ -]*$", message="A phone number holds digits, spaces and + ( ) . / -")])


class OpsConnectForm(FlaskForm):
    """Connect to OnPrintShop: a hosted store's API client (OPS_BACKEND=api)."""

    url = StringField("Store URL", validators=[
        DataRequired(message="Enter the store's address, such as https://shop.example.com."),
        URL(require_tld=False, message="Give the store's full address (https://…)."), Length(max=500)])
    ops_client_id = StringField("API client id", validators=[DataRequired(message="Enter the API client id."), Length(max=500)])
    ops_client_secret = PasswordField("API client secret", validators=[
        DataRequired(message="Enter the API client secret."), Length(max=500)])
