"""Example tasks, loaded by default: sales, echo, sleep, fail, the simulation
templates board_meeting and crisis_response, and the Spark sample service
myfolder/SalesExample."""

from batchd.tasks.examples import (
    board_meeting,
    crisis_response,
    echo,
    fail,
    sales,
    sales_example,
    sleep,
)

__all__ = [
    "board_meeting", "crisis_response", "echo", "fail", "sales", "sales_example", "sleep",
]
