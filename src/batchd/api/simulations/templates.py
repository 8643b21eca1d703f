"""Simulation requests → records of the dispatcher task, checked and priced per template."""

from __future__ import annotations

from typing import Any

from batchd.api.simulations.schemas import SimulationRequest
from batchd.core.manager import BatchManager
from batchd.domain import errors
from batchd.tasks import dispatch


def records(mgr: BatchManager, sims: list[SimulationRequest]) -> tuple[list[dict[str, Any]], float]:
    """One record per simulation (its template's input plus ``template_id``), and the
    batch's estimated cost from each template's cost model.

    Raises:
        errors.UnknownTask: a template is not registered (named in the message).
        errors.InvalidInput: a simulation does not fit its template's input schema.
    """
    cost = mgr.task(dispatch.SIMULATION).cost
    out: list[dict[str, Any]] = []
    est = 0.0
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
        record = {dispatch.TEMPLATE_KEY: name, **params}
        est += cost.estimate_record(record)
        out.append(record)
    return out, est
