"""The vocabulary every layer shares: models, states and their transitions, errors, cost.

It sits below every other package (see docs/architecture.md), so a store, an
executor or an exporter can name a batch or raise an error without importing core.
Nothing here does I/O or imports another batchd package.
"""
