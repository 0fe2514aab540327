"""The token and the rate limit hold for the whole deployment: 4 processes, one token, no 429."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.hosted.conftest import hosted_app

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RATE = (40, 2.0)  # OnPrintShop's 120 a minute, scaled down in calls and time for the test


def _processes(tmp_path, fake_ops, n=4, threads=3, calls=10):
    args = [str(tmp_path / "instance"), f"sqlite:///{tmp_path}/state.db", fake_ops.url, str(threads), str(calls),
            f"{RATE[0]} per {RATE[1]:g} seconds"]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.hosted.api_caller", *args], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(n)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    return sum(int(line.split()[1]) for out in outputs for line in out.splitlines() if line.startswith("answered "))


@pytest.mark.slow
def test_four_processes_share_one_token_and_stay_under_the_rate_limit(tmp_path, make_app, fake_zoho, zoho_settings, fake_ops):
    app = hosted_app(make_app, zoho_settings, fake_ops, OPS_API_RATE_LIMIT=f"{RATE[0]} per {RATE[1]:g} seconds")
    client_id, secret = fake_ops.add_client()
    assert app.test_cli_runner().invoke(args=["configure-ops", "--url", fake_ops.url, "--client-id", client_id,
                                              "--client-secret-stdin"], input=secret).exit_code == 0
    fake_ops.rate = RATE
    minted = fake_ops.calls["token"]  # configure-ops got one to check the client

    assert _processes(tmp_path, fake_ops) == 120  # 120 calls from 12 threads in 4 processes: three windows' worth
    assert fake_ops.calls["token"] == minted  # every process used the token already in the state store
    assert fake_ops.calls["429"] == 0
    assert fake_ops.max_in_window <= RATE[0]

    # The token expires at OnPrintShop: the first 401 gets a new one, once for the whole deployment.
    fake_ops.advance(3700)
    assert _processes(tmp_path, fake_ops, calls=3) == 36
    assert fake_ops.calls["token"] == minted + 1
    assert fake_ops.calls["401"] >= 1 and fake_ops.calls["429"] == 0
