"""(placeholder until the admin console lands) The admin blueprint."""
from flask import Blueprint

from ..security import login_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/login", methods=["GET", "POST"])
def login():
    return "login"


@bp.route("/", methods=["GET", "POST"])
@login_required
def index():
    return "admin"
