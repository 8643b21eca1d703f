"""Streaming export writers (JSONL, JSON, CSV, Parquet), shared by every dialect."""

from batchd.export.base import FORMATS, Exporter, exporter_for

__all__ = ["FORMATS", "Exporter", "exporter_for"]
