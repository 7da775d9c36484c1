"""`python -m bench.startup`: the parts of `purgewarden serve`'s start-up after its imports, timed (P4 evidence).

Prints JSON: seconds spent in `create_app` (building every tool and its schemas) and in creating the three
API clients the lifespan opens before the first answer.
"""

from __future__ import annotations

import json
import time

from purgewarden.clients.cocoon import CocoonClient
from purgewarden.clients.katapult import KatapultClient
from purgewarden.clients.vault import VaultClient
from purgewarden.config import Settings
from purgewarden.server.app import create_app, served_tools


def main() -> None:
    settings = Settings.from_env()
    served_tools(settings)  # imports the tool modules, as create_app does, outside the timing
    started = time.perf_counter()
    create_app(settings)
    built = time.perf_counter()
    secret = "unused"
    clients = [
        KatapultClient(settings.katapult_api_url, secret),
        VaultClient(settings.pvault_url, secret),
        CocoonClient(settings.cocoon_access_service_url or "http://127.0.0.1", secret),
    ]
    opened = time.perf_counter()
    print(json.dumps({"create_app": built - started, "clients": opened - built, "count": len(clients)}))


if __name__ == "__main__":
    main()
