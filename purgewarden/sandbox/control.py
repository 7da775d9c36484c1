"""The sandbox's control plane: `/_sandbox/...` routes beside each emulator (faults, reset, clock).

Like moto's `moto_api`, test controls live apart from the emulated API, so nothing here can be
mistaken for a vendor endpoint and fault injection never touches them.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from purgewarden.sandbox.clock import Clock
from purgewarden.sandbox.faults import ErrorBodyFactory, Fault, FaultInjector


class Backend(Protocol):
    def reset(self) -> None:
        """Forget every change and return to the deterministic demo data."""


def instrument(
    api: ASGIApp,
    backend: Backend,
    clock: Clock,
    error_body: ErrorBodyFactory,
    seed: int = 0,
    error_headers: dict[str, str] | None = None,
) -> FaultInjector:
    """Put the control routes beside `api` and wrap both in a fault injector."""
    injector: FaultInjector

    async def list_faults(request: Request) -> Response:
        return JSONResponse(injector.active())

    async def add_fault(request: Request) -> Response:
        try:
            fault = Fault.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": "invalid fault", "detail": exc.errors(include_url=False)}, 400)
        injector.add(fault)
        return JSONResponse(fault.model_dump(), 201)

    async def clear_faults(request: Request) -> Response:
        seed_param = request.query_params.get("seed")
        injector.clear(int(seed_param) if seed_param else None)
        return Response(status_code=204)

    async def reset(request: Request) -> Response:
        backend.reset()
        injector.clear()
        return Response(status_code=204)

    async def advance_clock(request: Request) -> Response:
        body = await request.json()
        clock.advance(float(body["seconds"]))
        return JSONResponse({"now": clock.now()})

    app = Starlette(
        routes=[
            Route("/_sandbox/faults", list_faults, methods=["GET"]),
            Route("/_sandbox/faults", add_fault, methods=["POST"]),
            Route("/_sandbox/faults", clear_faults, methods=["DELETE"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/clock", advance_clock, methods=["POST"]),
            Mount("", app=api),
        ]
    )
    injector = FaultInjector(app, error_body, seed, error_headers)
    return injector
