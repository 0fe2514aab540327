"""(placeholder until the inbound webhooks land) The webhook blueprint."""
from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
