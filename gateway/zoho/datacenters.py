"""Zoho's data centers: each one's accounts server and CRM API (a client and its tokens work only
at their own), and the overrides `ZOHO_ACCOUNTS_URL`, `ZOHO_API_URL` (docs/zoho.md)."""
from __future__ import annotations

from urllib.parse import urlsplit

# code -> (accounts server, API domain); Zoho's token answer's `api_domain` is preferred.
DATA_CENTERS: dict[str, tuple[str, str]] = {
    "us": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "in": ("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "au": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "jp": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "ca": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    "sa": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    "uk": ("https://accounts.zoho.uk", "https://www.zohoapis.uk"),
    "cn": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
}

DATA_CENTER_NAMES = {
    "us": "United States (zoho.com)",
    "eu": "Europe (zoho.eu)",
    "in": "India (zoho.in)",
    "au": "Australia (zoho.com.au)",
    "jp": "Japan (zoho.jp)",
    "ca": "Canada (zohocloud.ca)",
    "sa": "Saudi Arabia (zoho.sa)",
    "uk": "United Kingdom (zoho.uk)",
    "cn": "China (zoho.com.cn)",
}


class UnknownDataCenter(ValueError):
    pass


def check_code(code: str) -> str:
    code = (code or "").strip().lower()
    if code not in DATA_CENTERS:
        raise UnknownDataCenter(f"data center must be one of {' '.join(DATA_CENTERS)}, not {code!r}")
    return code


def accounts_url(config, data_center: str, accounts_server: str | None = None) -> str:
    """Where token requests go: the server Zoho named in its redirect, else the override, else the table."""
    if accounts_server:
        return accounts_server.rstrip("/")
    override = config.get("ZOHO_ACCOUNTS_URL")
    if override:
        return str(override).rstrip("/")
    return DATA_CENTERS[check_code(data_center)][0]


def api_url(config, data_center: str | None, api_domain: str | None) -> str:
    """Where CRM API calls go: the override, else the token answer's api_domain, else the table."""
    override = config.get("ZOHO_API_URL")
    if override:
        return str(override).rstrip("/")
    if api_domain:
        return api_domain.rstrip("/")
    return DATA_CENTERS[check_code(data_center or "us")][1]


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def trusted_accounts_server(config, server: str | None) -> str | None:
    """The `accounts-server` Zoho's redirect named, if our client secret may go there: a known Zoho
    accounts server, or the origin of `ZOHO_ACCOUNTS_URL`; else None (a forged callback)."""
    if not server:
        return None
    server = server.strip().rstrip("/")
    known = {_origin(url) for url, _ in DATA_CENTERS.values()}
    try:
        origin = _origin(server)
        path = urlsplit(server).path
    except ValueError:  # not a URL at all (e.g. an unclosed "[" in the host)
        return None
    if origin in known and path in ("", "/"):
        return server
    override = config.get("ZOHO_ACCOUNTS_URL")
    if override and origin == _origin(str(override)):
        return server
    return None
