"""The sandbox's control plane: `/_sandbox/...` routes beside each emulator (faults, reset, clock, and
the capacity model where the emulator has one).

Like moto's `moto_api`, test controls live apart from the emulated API, so nothing here can be
mistaken for a vendor endpoint and fault injection never touches them.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from purgewarden.sandbox.capacity import Capacity, Throttle
from purgewarden.sandbox.clock import Clock
from purgewarden.sandbox.faults import ErrorBodyFactory, Fault, FaultInjector


class ClockAdvance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, allow_inf_nan=False, description="How far the emulator's time moves forward")


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
    throttle: Throttle | None = None,
) -> FaultInjector:
    """Put the control routes beside `api` and wrap both in a fault injector; with `throttle` (the
    emulator's capacity model) also `/_sandbox/capacity`."""
    injector: FaultInjector

    async def list_faults(request: Request) -> Response:
        return JSONResponse(injector.active())

    async def add_fault(request: Request) -> Response:
        try:
            fault = Fault.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid("fault", exc)
        injector.add(fault)
        return JSONResponse(fault.model_dump(), 201)

    async def clear_faults(request: Request) -> Response:
        seed_param = request.query_params.get("seed")
        try:
            seed = int(seed_param) if seed_param else None
        except ValueError:
            return JSONResponse({"error": "invalid seed", "detail": "seed must be an integer"}, 400)
        injector.clear(seed)
        return Response(status_code=204)

    async def reset(request: Request) -> Response:
        backend.reset()
        injector.clear()
        if throttle is not None:
            throttle.reset()
        return Response(status_code=204)

    async def advance_clock(request: Request) -> Response:
        try:
            advance = ClockAdvance.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid("clock advance", exc)
        clock.advance(advance.seconds)
        return JSONResponse({"now": clock.now()})

    routes = [
        Route("/_sandbox/faults", list_faults, methods=["GET"]),
        Route("/_sandbox/faults", add_fault, methods=["POST"]),
        Route("/_sandbox/faults", clear_faults, methods=["DELETE"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/clock", advance_clock, methods=["POST"]),
    ]
    if throttle is not None:
        routes += _capacity_routes(throttle)
    app = Starlette(routes=[*routes, Mount("", app=api)])
    injector = FaultInjector(app, error_body, seed, error_headers)
    return injector


def _capacity_routes(throttle: Throttle) -> list[Route]:
    """`/_sandbox/capacity`: GET the setting and counters, PUT a `Capacity` as JSON, DELETE to turn it off."""

    def state() -> dict[str, Any]:
        capacity = throttle.capacity
        return {
            "capacity": capacity.model_dump() if capacity is not None else None,
            "stats": asdict(throttle.stats()),
        }

    async def get_capacity(request: Request) -> Response:
        return JSONResponse(state())

    async def set_capacity(request: Request) -> Response:
        try:
            capacity = Capacity.model_validate_json(await request.body())
        except ValidationError as exc:
            return _invalid("capacity", exc)
        throttle.set(capacity)
        return JSONResponse(state())

    async def clear_capacity(request: Request) -> Response:
        throttle.set(None)
        return Response(status_code=204)

    return [
        Route("/_sandbox/capacity", get_capacity, methods=["GET"]),
        Route("/_sandbox/capacity", set_capacity, methods=["PUT"]),
        Route("/_sandbox/capacity", clear_capacity, methods=["DELETE"]),
    ]


def _invalid(what: str, exc: ValidationError) -> Response:
    """400 naming what was wrong; through pydantic's JSON, since a body that is not JSON is kept as bytes."""
    return JSONResponse({"error": f"invalid {what}", "detail": json.loads(exc.json(include_url=False))}, 400)
