"""An ``.xlsx`` workbook compiled once into an evaluation plan.

Every formula is parsed and compiled with ``formulas`` (the maintained pure-Python
Excel engine). Cells that do not depend on any input are computed here, once; the
others become :class:`Step` s in dependency order, each marked *element-wise* when its
formula can run over a whole column of records at once (see :mod:`.graph` and
:mod:`.evaluate`). The interface (:mod:`.names`, :mod:`.inputs`) and the date cells
(:mod:`.dates`: formatted as dates, or read as dates by a formula) are worked out here.

A workbook is refused (:class:`WorkbookError`) when a formula calls a function the
engine cannot evaluate, names a sheet or name that does not exist, or refers to itself
in a cycle: the message names the cell and the function, so that nothing is ever
evaluated wrongly at run time.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import formulas
import numpy as np
import openpyxl
from formulas.functions import get_functions, not_implemented
from formulas.tokens.operand import Error
from openpyxl.worksheet.formula import ArrayFormula

from batchd.tasks.workbook import dates, excel, graph, inputs, names, pipes
from batchd.tasks.workbook.cells import EMPTY, Area, Cell, label, stored
from batchd.tasks.workbook.inputs import Field

excel.install()  # Excel's answers where the engine differs, before anything compiles
SUPPORTED = frozenset(k for k, v in get_functions().items() if v is not not_implemented)
LIGHT_STEPS = 20


class WorkbookError(ValueError):
    """A workbook that cannot be a service; ``cell`` and ``function`` say where and why."""

    def __init__(self, message: str, *, cell: str | None = None,
                 function: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cell = cell
        self.function = function


@dataclass(slots=True)
class Step:
    """One formula cell that depends on the record."""

    cell: Cell
    fn: Callable[..., Any]
    args: tuple[Area, ...]
    elementwise: bool
    # Column-wise with some calls taking each record's values (graph.nodewise): the
    # formula's calls, run by columns.call.
    pipe: pipes.Pipe | None = None


@dataclass(slots=True)
class Compiled:
    """A compiled workbook: its interface, its fixed values and its steps."""

    inputs: dict[str, Area]
    outputs: dict[str, Area]
    fields: dict[str, Field]
    values: dict[Cell, Any]
    steps: list[Step]
    dynamic: set[Cell] = field(default_factory=set)
    tables: dict[Area, np.ndarray] = field(default_factory=dict)
    output_dates: dict[Cell, str] = field(default_factory=dict)  # cell → dates.DATE…
    # The engine's compiled formulas keep their state on themselves while they run:
    # one evaluation at a time per compiled workbook.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def light(self) -> bool:
        """Few formulas, all element-wise: a chunk takes a few milliseconds."""
        return len(self.steps) <= LIGHT_STEPS and all(
            s.elementwise and s.pipe is None for s in self.steps)

    @property
    def input_schema(self) -> dict[str, Any]:
        """The JSON schema of a record (the shapes of range inputs, see :mod:`.inputs`)."""
        return inputs.schema(self.fields)

    @property
    def vectorised_share(self) -> float:
        """The share of steps that run column-wise (1.0: the whole workbook)."""
        return sum(s.elementwise for s in self.steps) / len(self.steps) if self.steps else 1.0


@dataclass(slots=True)
class _Formula:
    cell: Cell
    fn: Callable[..., Any]
    args: tuple[Area, ...]
    functions: frozenset[str]


def compile_workbook(content: bytes) -> Compiled:
    """Parse and compile ``content`` (an ``.xlsx`` file).

    Raises:
        WorkbookError: not a workbook, or one the engine cannot run (see the module).
    """
    wb = _open(content)
    dims = {ws.title.upper(): (ws.max_row, ws.max_column) for ws in wb.worksheets}
    texts, values = _cells(wb)
    areas = names.defined_areas(wb)
    try:
        iface = names.interface(areas, lambda c: c in texts)
    except names.NameProblem as exc:
        raise WorkbookError(str(exc)) from None
    by_name = {n.upper(): a for n, a in areas.items()}
    compiled = {cell: _compile(cell, text, by_name, dims) for cell, text in texts.items()}
    try:
        order = graph.order(compiled, lambda f: _cells_of(f.args))
    except graph.CycleError as exc:
        raise WorkbookError(str(exc), cell=label(exc.cell)) from None
    input_cells = {c for a in iface.inputs.values() for c in a.cells()}
    dynamic = graph.dynamic(order, compiled, input_cells, lambda f: _cells_of(f.args),
                            volatile=lambda f: bool(f.functions & graph.VOLATILE))
    formats = _date_formats(wb, [c for a in [*iface.inputs.values(), *iface.outputs.values()]
                                 for c in a.cells()])
    dated = {c for c in input_cells if c in formats} | (_read_as_dates(compiled.values())
                                                        & input_cells)
    plan = Compiled(inputs=iface.inputs, outputs=iface.outputs, values=values, steps=[],
                    dynamic=dynamic, fields=inputs.fields(iface.inputs, values, dated),
                    output_dates={c: formats[c] for a in iface.outputs.values()
                                  for c in a.cells() if c in formats})
    needed = graph.needed([c for a in iface.outputs.values() for c in a.cells()], compiled,
                          lambda f: _cells_of(f.args))
    for cell in order:
        if cell not in needed:
            continue  # feeds no output
        f = compiled[cell]
        if cell in dynamic:
            elementwise, pipe = _mode(f, dynamic)
            plan.steps.append(Step(cell=cell, fn=f.fn, args=f.args, elementwise=elementwise,
                                   pipe=pipe))
        else:
            values[cell] = _fixed(f, plan)
    for step in plan.steps:
        for area in step.args:
            if not area.is_cell and not any(c in dynamic for c in area.cells()):
                plan.tables.setdefault(area, table(area, values))
    return plan


def _mode(f: _Formula, dynamic: set[Cell]) -> tuple[bool, pipes.Pipe | None]:
    """Whether ``f`` runs column-wise, and its calls when some take each record's values."""
    if isinstance(f.fn, pipes.Pipe):
        kinds = {name: _kind(area, dynamic) for name, area in zip(f.fn.names, f.args,
                                                                  strict=True)}
        if graph.nodewise([(n.function, n.inputs) for n in f.fn.nodes], kinds):
            by_record = graph.RECORDS in kinds.values() or any(
                n.function in graph.RECORDWISE for n in f.fn.nodes)
            return True, f.fn if by_record else None
    return graph.elementwise(f.functions, f.args, dynamic), None


def _kind(area: Area, dynamic: set[Cell]) -> str:
    if area.is_cell:
        return graph.CELL
    return graph.RECORDS if any(c in dynamic for c in area.cells()) else graph.TABLE


def _date_formats(wb: Any, cells: list[Cell]) -> dict[Cell, str]:
    """The cells among ``cells`` that the workbook formats as dates → dates.DATE…"""
    sheets = {ws.title.upper(): ws for ws in wb.worksheets}
    found = {}
    for cell in cells:
        sheet, row, col = cell
        ws = sheets.get(sheet)  # a name may point at a sheet that is gone
        kind = None if ws is None else dates.format_kind(ws.cell(row=row, column=col)
                                                         .number_format)
        if kind is not None:
            found[cell] = kind
    return found


def _read_as_dates(formulas: Any) -> set[Cell]:
    """The cells some formula passes straight to a function as a date (YEAR(B1))."""
    found = set()
    for f in formulas:
        if not isinstance(f.fn, pipes.Pipe):
            continue
        by_name = dict(zip(f.fn.names, f.args, strict=True))
        for node in f.fn.nodes:
            for at in dates.DATE_ARGS.get(node.function, ()):
                area = by_name.get(node.inputs[at]) if at < len(node.inputs) else None
                if area is not None and area.is_cell:
                    found.add(area.first)
    return found


def _open(content: bytes) -> Any:
    try:
        return openpyxl.load_workbook(io.BytesIO(content), data_only=False)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as exc:
        raise WorkbookError(f"not an .xlsx workbook: {exc}") from None


def _cells(wb: Any) -> tuple[dict[Cell, str], dict[Cell, Any]]:
    """Every formula's text, and every other cell's value, by cell."""
    texts: dict[Cell, str] = {}
    values: dict[Cell, Any] = {}
    for ws in wb.worksheets:
        sheet = ws.title.upper()
        for row in ws.iter_rows():
            for c in row:
                if c.value is None:
                    continue
                cell = (sheet, c.row, c.column)
                v = c.value.text if isinstance(c.value, ArrayFormula) else c.value
                if type(v).__name__ == "DataTableFormula":
                    raise WorkbookError(f"{label(cell)}: data tables (what-if) are not "
                                        "supported", cell=label(cell))
                if isinstance(v, str) and v.startswith("=") and len(v) > 1:
                    texts[cell] = v
                elif c.data_type == "e" and v in Error.errors:
                    values[cell] = Error.errors[v]  # a saved #N/A is an error, not text
                else:
                    values[cell] = stored(v)
    return texts, values


def _compile(cell: Cell, text: str, by_name: dict[str, Area],
             dims: dict[str, tuple[int, int]]) -> _Formula:
    where = label(cell)
    try:
        tokens, builder = formulas.Parser().ast(text, context={"sheet": cell[0]})
    except Exception as exc:  # the parser's own errors carry no common base
        raise WorkbookError(f"{where}: cannot parse {text!r}: {exc}", cell=where) from None
    used = frozenset(_function_names(tokens))
    for name in sorted(used):
        if name not in SUPPORTED:
            raise WorkbookError(
                f"{where}: the function {name} is not supported by the formula engine",
                cell=where, function=name)
    try:
        fn = builder.compile()
    except Exception as exc:
        raise WorkbookError(f"{where}: cannot compile {text!r}: {exc}", cell=where) from None
    args = tuple(_arg(where, key, rng, by_name, dims) for key, rng in fn.inputs.items())
    return _Formula(cell=cell, fn=pipes.flatten(fn), args=args, functions=used)


def _function_names(tokens: list[Any]) -> list[str]:
    return [pipes.canonical(tok.name) for tok in tokens if type(tok).__name__ == "Function"]


def _arg(where: str, key: str, rng: Any, by_name: dict[str, Area],
         dims: dict[str, tuple[int, int]]) -> Area:
    if rng is None:  # a defined name
        area = by_name.get(key.upper())
        if area is None:
            raise WorkbookError(f"{where}: the name {key} is not defined in the workbook",
                                cell=where)
        return area
    r = rng.ranges[0]
    sheet = str(r["sheet"]).upper()
    if sheet not in dims:
        raise WorkbookError(f"{where}: the sheet {r['sheet']!r} does not exist", cell=where)
    max_row, max_col = dims[sheet]
    # Whole rows and columns (A:A, 2:2) stop at the sheet's used range.
    r1, r2 = max(1, int(r["r1"] or 1)), min(int(r["r2"]), max(max_row, 1))
    c1, c2 = max(1, int(r["n1"] or 1)), min(int(r["n2"]), max(max_col, 1))
    return Area(sheet, r1, c1, max(r1, r2), max(c1, c2))


def _cells_of(args: tuple[Area, ...]) -> list[Cell]:
    return [c for a in args for c in a.cells()]


def table(area: Area, values: dict[Cell, Any]) -> np.ndarray:
    """The values of ``area`` as the engine takes a range."""
    rows = [[values.get(c, EMPTY) for c in row] for row in area.rows()]
    return np.array(rows, dtype=object).reshape(area.shape)


def _fixed(f: _Formula, plan: Compiled) -> Any:
    args = [table(a, plan.values) for a in f.args]
    try:
        return scalar(f.fn(*args))
    except Exception as exc:
        where = label(f.cell)
        raise WorkbookError(f"{where}: the formula fails: {exc}", cell=where) from None


def scalar(result: Any) -> Any:
    """A formula's result as one cell's value (the top-left of an array)."""
    if isinstance(result, np.ndarray):
        return result.ravel()[0] if result.size else EMPTY
    return result
