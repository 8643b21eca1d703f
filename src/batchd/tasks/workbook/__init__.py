"""Excel workbooks as services: compile an ``.xlsx`` once, evaluate chunks of records.

- :mod:`.names`: which defined names are inputs and outputs;
- :mod:`.compiler`: parse, check and compile every formula (``formulas``);
- :mod:`.graph`: evaluation order, record dependence, element-wise formulas;
- :mod:`.evaluate`: records through the plan, column-wise or per record;
- :mod:`.cells`: cells, areas, and values between JSON and the engine.

Needs the ``workbooks`` extra (``formulas``, ``openpyxl``).
"""
