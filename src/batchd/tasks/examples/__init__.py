"""Example tasks, loaded by default: sales, echo, sleep, fail, the simulation
templates board_meeting and crisis_response, and the Spark sample service
myfolder/SalesExample (and its workbook twin, myfolder/SalesExampleWorkbook, with the
workbooks extra), and the AI job queue's job types (ai_jobs)."""

from batchd.tasks.examples import (
    ai_jobs,
    board_meeting,
    crisis_response,
    echo,
    fail,
    sales,
    sales_example,
    sales_workbook,
    sleep,
)

__all__ = [
    "ai_jobs", "board_meeting", "crisis_response", "echo", "fail", "sales", "sales_example",
    "sales_workbook", "sleep",
]
