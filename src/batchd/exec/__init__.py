"""Executors run handlers; the worker claims, runs and records items."""
