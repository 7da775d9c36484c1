"""Local emulators of the Katapult, Piiano Vault and Cocoon Data APIs (the embedded default).

`Sandbox` is the Python API: it owns one backend per service, a shared clock, a fault injector per
emulator and the Vault's capacity model (off unless given), and serves them on loopback with `start()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from purgewarden.sandbox import cocoon, katapult, vault
from purgewarden.sandbox.capacity import Capacity, CapacityStats, CapacityWindow, Throttle
from purgewarden.sandbox.clock import Clock
from purgewarden.sandbox.control import instrument
from purgewarden.sandbox.faults import Fault, FaultInjector
from purgewarden.sandbox.runner import LoopbackServer

Service = Literal["katapult", "vault", "cocoon"]
SERVICES: tuple[Service, ...] = ("katapult", "vault", "cocoon")


@dataclass(frozen=True)
class Endpoint:
    """Where one emulator listens (the root URL its client is configured with) and a demo credential."""

    url: str
    credential: str


class Sandbox:
    """All three emulators with deterministic demo data; a context manager that serves them on loopback."""

    def __init__(
        self,
        seed: int = 0,
        *,
        katapult_rate_limit: int = 1000,
        task_seconds: float = 2.0,
        vault_capacity: Capacity | None = None,
    ) -> None:
        self.clock = Clock()
        self.katapult = katapult.KatapultBackend(
            self.clock, rate_limit=katapult_rate_limit, task_seconds=task_seconds
        )
        self.vault = vault.VaultBackend(self.clock)
        self.cocoon = cocoon.CocoonBackend(self.clock)
        self.throttles: dict[Service, Throttle] = {"vault": Throttle(vault_capacity)}
        self.faults: dict[Service, FaultInjector] = {
            "katapult": instrument(
                katapult.create_app(self.katapult),
                self.katapult,
                self.clock,
                katapult.error_body,
                seed,
                {"X-Api-Schema": "json-error"},  # injected errors carry the header real ones do
            ),
            "vault": instrument(
                vault.create_app(self.vault, self.throttles["vault"]),
                self.vault,
                self.clock,
                vault.error_body,
                seed,
                throttle=self.throttles["vault"],
            ),
            "cocoon": instrument(
                cocoon.create_app(self.cocoon), self.cocoon, self.clock, cocoon.error_body, seed
            ),
        }
        self._servers: dict[Service, LoopbackServer] = {}

    def start(
        self, ports: dict[Service, int] | None = None, host: str = "127.0.0.1"
    ) -> dict[Service, Endpoint]:
        for service in SERVICES:
            server = LoopbackServer(self.faults[service], host=host, port=(ports or {}).get(service, 0))
            server.start()
            self._servers[service] = server
        return self.endpoints

    @property
    def endpoints(self) -> dict[Service, Endpoint]:
        credentials: dict[Service, str] = {
            "katapult": katapult.DEMO_TOKEN,
            "vault": vault.DEMO_API_KEY,
            "cocoon": cocoon.DEMO_ACCESS_TOKEN,
        }
        return {s: Endpoint(server.url, credentials[s]) for s, server in self._servers.items()}

    def server_environment(self) -> dict[str, str]:
        """The variables `purgewarden serve` reads, pointing at this sandbox with its demo credentials."""
        endpoints = self.endpoints
        return {
            "KATAPULT_API_URL": endpoints["katapult"].url,
            "KATAPULT_API_TOKEN": endpoints["katapult"].credential,
            "PVAULT_URL": endpoints["vault"].url,
            "PVAULT_API_KEY": endpoints["vault"].credential,
            "COCOON_ACCESS_SERVICE_URL": endpoints["cocoon"].url,
            "COCOON_ACCESS_TOKEN": endpoints["cocoon"].credential,
            "COCOON_ORGANISATION_ID": cocoon.DEMO_ORGANISATION_ID,
        }

    def inject(self, service: Service, fault: Fault) -> None:
        self.faults[service].add(fault)

    def set_capacity(self, service: Service, capacity: Capacity | None) -> CapacityStats:
        """Give an emulator a capacity model (None: none) for requests arriving from now on; returns its
        counters so far. Only the Vault has one."""
        throttle = self._throttle(service)
        throttle.set(capacity)
        return throttle.stats()

    def capacity_stats(self, service: Service) -> CapacityStats:
        return self._throttle(service).stats()

    def capacity_window(self, service: Service) -> CapacityWindow:
        """The counters since the last window, then zero (`Throttle.window`)."""
        return self._throttle(service).window()

    def _throttle(self, service: Service) -> Throttle:
        throttle = self.throttles.get(service)
        if throttle is None:
            raise ValueError(f"the {service} emulator has no capacity model")
        return throttle

    def reset(self) -> None:
        """Back to the demo data, no faults, no capacity model, the real time."""
        self.clock.reset()
        for backend in (self.katapult, self.vault, self.cocoon):
            backend.reset()
        for injector in self.faults.values():
            injector.clear()
        for throttle in self.throttles.values():
            throttle.reset()

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = [
    "SERVICES",
    "Capacity",
    "CapacityStats",
    "CapacityWindow",
    "Endpoint",
    "Fault",
    "Sandbox",
    "Service",
]
