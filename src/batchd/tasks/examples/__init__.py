"""Example tasks, loaded by default: sales, echo, sleep, fail."""

from batchd.tasks.examples import echo, fail, sales, sleep

__all__ = ["echo", "fail", "sales", "sleep"]
