"""(placeholder until the Zoho connection lands)"""


def state(rt) -> str:
    return "not_configured"
