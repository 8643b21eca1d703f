"""The engine's store transactions, one module per concern.

Each function here is a transaction script (see :mod:`batchd.store.script`): it
reads through named queries, decides with the pure functions of core, and writes.
Both backends run the same scripts; their SQL differs, their rules cannot.
"""
