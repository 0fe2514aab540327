"""(placeholder until the events API lands) The events API blueprint."""
from flask import Blueprint

bp = Blueprint("events", __name__, url_prefix="/api/v1")
