"""The admin page's forms (Flask-WTF: every one carries the CSRF token).

Validation here is about shape (required, length, digits); what Zoho thinks of the values is
found out by `gateway.zoho.connection.configure`, which answers in plain words.
"""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, PasswordField, SelectField, SelectMultipleField, StringField
from wtforms import widgets
from wtforms.validators import URL, DataRequired, InputRequired, Length, NumberRange, Optional, Regexp

# CONTRACT §2/§6: the data centers an admin may choose (Zoho's own domains for each).
DATA_CENTER_LABELS = (
    ("us", "United States (zoho.com)"),
    ("eu", "Europe (zoho.eu)"),
    ("in", "India (zoho.in)"),
    ("au", "Australia (zoho.com.au)"),
    ("jp", "Japan (zoho.jp)"),
    ("ca", "Canada (zohocloud.ca)"),
    ("sa", "Saudi Arabia (zoho.sa)"),
    ("uk", "United Kingdom (zoho.uk)"),
    ("cn", "China (zoho.com.cn)"),
)
MODULE_CHOICES = (("contacts", "Contacts (customers)"), ("deals", "Deals (orders)"))


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class LoginForm(FlaskForm):
    password = PasswordField("Password", validators=[DataRequired(message="Enter the admin password."), Length(max=500)])
    next = HiddenField()


class ConfigureForm(FlaskForm):
    data_center = SelectField("Data center", choices=DATA_CENTER_LABELS, default="us")
    client_id = StringField(
        "Client ID",
        validators=[DataRequired(message="Enter the Client ID from Zoho's API Console."), Length(max=200)],
    )
    client_secret = PasswordField(
        "Client Secret",
        validators=[DataRequired(message="Enter the Client Secret from Zoho's API Console."), Length(max=200)],
    )
    grant_token = PasswordField(
        "Grant Token",
        validators=[DataRequired(message="Enter a fresh grant token (it is valid for a few minutes only)."), Length(max=500)],
    )
    account_id = StringField(
        "Zoho Account ID",
        validators=[
            DataRequired(message="Enter the id of the Zoho Account record that synced records belong to."),
            Regexp(r"^\s*\d{5,25}\s*$", message="The Account ID is the long number at the end of the Account's URL in Zoho CRM."),
        ],
    )
    redirect_uri = StringField(
        "Redirect URI (optional)",
        validators=[Optional(), URL(require_tld=False, message="Give a full URL (https://…) or leave it empty."), Length(max=500)],
    )
    modules = MultiCheckboxField(
        "Modules to sync",
        choices=MODULE_CHOICES,
        default=["contacts", "deals"],
        validators=[DataRequired(message="Choose at least one module to sync.")],
    )


class RetryJobForm(FlaskForm):
    job_id = IntegerField("Job", validators=[InputRequired(message="Which dead job?"), NumberRange(min=1)])


class PushForm(FlaskForm):
    kind = SelectField("What", choices=(("customers", "Customer"), ("orders", "Order")))
    record_id = IntegerField(
        "OnPrintShop id",
        validators=[InputRequired(message="Enter the OnPrintShop id to push."), NumberRange(min=1, message="Ids are positive whole numbers.")],
    )


class NotifyForm(FlaskForm):
    enabled = SelectField("Notification API", choices=(("on", "on"), ("off", "off")))
