"""How long an OnPrintShop API token is taken to be valid, from whatever its answer says."""
from __future__ import annotations

import base64
import json

import pytest

from gateway.ops.api.token import FALLBACK_TTL, lifetime_of, refresh_margin

NOW = 1_800_000_000.0


def jwt(claims: dict) -> str:
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{part}.c2lnbmF0dXJl"


@pytest.mark.parametrize("answer, seconds", [
    ({"access_token": "t", "expires_in": 3600}, 3600),
    ({"access_token": "t", "expires_in": "1800"}, 1800),                    # a number sent as text
    ({"access_token": "t", "expires_at": NOW + 900}, 900),
    ({"access_token": "t", "expiry": str(int(NOW) + 600)}, 600),
    ({"access_token": jwt({"exp": NOW + 1200})}, 1200),                       # only the JWT knows
    ({"access_token": "t", "expires_in": 0, "expires_at": NOW - 5}, FALLBACK_TTL),  # nonsense: 55 minutes
    ({"access_token": "t", "expires_in": "soon"}, FALLBACK_TTL),
    ({"access_token": "not.a.jwt"}, FALLBACK_TTL),
    ({"access_token": "t"}, FALLBACK_TTL),
    ({"access_token": "t", "expires_in": "inf"}, FALLBACK_TTL),
    ({"access_token": "t", "expires_at": (NOW + 3600) * 1000}, 86400),  # milliseconds: at most a day
])
def test_a_tokens_lifetime_is_read_from_what_the_answer_says(answer, seconds):
    assert lifetime_of(answer, NOW) == pytest.approx(seconds)


def test_a_token_is_renewed_before_it_expires_by_a_tenth_of_its_life_between_5_and_60_seconds():
    assert [refresh_margin(s) for s in (30, 300, 3600)] == [5.0, 30.0, 60.0]
