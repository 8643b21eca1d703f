"""Simulation requests → records of the dispatcher task, checked and priced per template."""

from __future__ import annotations

from typing import Any

from batchd.api.simulations.schemas import SimulationRequest
from batchd.core.manager import BatchManager
from batchd.domain import errors
from batchd.tasks import dispatch


def records(mgr: BatchManager, sims: list[SimulationRequest]) -> list[dict[str, Any]]:
    """One record per simulation: its template's input plus ``template_id`` (the
    dispatcher task prices each by its template's cost model).

    Raises:
        errors.UnknownTask: a template is not registered (named in the message).
        errors.InvalidInput: a simulation does not fit its template's input schema.
    """
    out: list[dict[str, Any]] = []
    for i, sim in enumerate(sims):
        name = sim.template_id
        try:
            template = dispatch.target(mgr.registry, name, dispatcher=dispatch.SIMULATION)
        except errors.UnknownTask:
            raise errors.UnknownTask(
                f"simulations[{i}]: unknown template_id {name!r}"
            ) from None
        params = sim.params()
        problem = template.input_errors(params)
        if problem:
            raise errors.InvalidInput(f"simulations[{i}] ({name}): {problem}")
        out.append({dispatch.TEMPLATE_KEY: name, **params})
    return out
