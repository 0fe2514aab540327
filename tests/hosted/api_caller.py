"""One gateway process calling OnPrintShop's API from several threads (for the 4-process tests);
prints how many calls were answered."""
from __future__ import annotations

import sys
import threading

from gateway import create_app
from gateway.ops.api import records


def main(instance: str, state_url: str, api_url: str, threads: int, calls: int, rate: str) -> None:
    app = create_app({"GATEWAY_ENV": "development", "INSTANCE_PATH": instance, "DATABASE_URL": state_url,
                      "OPS_BACKEND": "api", "OPS_API_RATE_LIMIT": rate, "GATEWAY_RUN_WORKER": False})
    backend = app.extensions["gateway"].ops
    answered = []

    def work():
        for _ in range(calls):
            backend.api.rows(records.STATUSES, "orderStatus", "orderStatus", {"limit": 10})
            answered.append(1)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(f"answered {len(answered)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
