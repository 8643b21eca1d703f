"""The user's path with their own tasks (issue 14, point 4), through the real ``batchd``
command: a task module in the working directory loads without PYTHONPATH; one that
cannot be imported is one line and exit code 1; a worker claims only items of tasks it
has, so a mixed fleet works, and a batch whose task no running worker has says so."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    Server,
    drop_database,
    fresh_database_url,
    scaled,
    wait_batch,
    wait_until,
)

pytestmark = pytest.mark.timeout(scaled(120))

BATCHD = str(Path(sys.executable).with_name("batchd"))  # the installed command

MYPROJ_TASKS = '''
from batchd import task


@task("shout", input_schema={"type": "object", "required": ["text"]})
def shout(record):
    return {"text": record["text"].upper()}
'''


def user_env(**settings: Any) -> dict[str, str]:
    """The environment a user has: no PYTHONPATH, BATCHD_* settings."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith("BATCHD_")}
    env.update({f"BATCHD_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class UserProcess(Server):
    """``batchd serve`` or ``batchd worker`` run as a user runs it: the installed command,
    in the project's directory, without PYTHONPATH."""

    def start(self, *, wait: bool = True) -> UserProcess:
        env = {**user_env(), **self.env, "BATCHD_PORT": "0",
               "BATCHD_DATABASE_URL": self.database_url, "BATCHD_ADMIN_KEY": self.admin_key}
        self.port = 0
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([BATCHD, self.command], env=env, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.log_path.parent)
        if wait and self.command == "serve":
            self.wait_ready()
        elif wait:
            wait_until(lambda: self._exited() or " running (" in self.log_since_start(),
                       what="the worker to start")
        return self


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project: ``myproj/tasks.py`` registering ``shout``."""
    (tmp_path / "myproj").mkdir()
    (tmp_path / "myproj" / "__init__.py").write_text("")
    (tmp_path / "myproj" / "tasks.py").write_text(MYPROJ_TASKS)
    return tmp_path


@pytest.fixture
def start(project: Path) -> Iterator[Callable[..., UserProcess]]:
    """Factory: ``start("serve" | "worker", **settings)`` in the project's directory, all
    on one fresh database."""
    started: list[UserProcess] = []
    db_url = fresh_database_url(project)
    admin_key = "test-admin-" + secrets.token_hex(16)

    def make(command: str = "serve", **settings: Any) -> UserProcess:
        env = {f"BATCHD_{k.upper()}": str(v) for k, v in settings.items()}
        proc = UserProcess(database_url=db_url, admin_key=admin_key, env=env,
                           command=command, log_path=project / f"{command}-{len(started)}.log")
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()
    drop_database(db_url)


def run_batchd(project: Path, command: str, **settings: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BATCHD, command], env=user_env(**settings), cwd=project,
                          capture_output=True, text=True, timeout=scaled(60))


def submit(c: httpx.Client, task: str, items: list[Any]) -> dict[str, Any]:
    r = c.post("/api/batches", json={"task": task, "items": items})
    assert r.status_code == 201, r.text
    return r.json()


def test_a_task_module_in_the_working_directory_loads_as_documented(
    start: Callable[..., UserProcess],
) -> None:
    srv = start("serve", tasks="myproj.tasks")
    with srv.client() as c:
        b = submit(c, "shout", [{"text": "hi"}, {"text": "there"}])
        done = wait_batch(c, b["id"])
        assert done["status"] == "completed", done
        rows = c.get(f"/api/batches/{b['id']}/results", params={"format": "json"}).json()
    assert [r["output"] for r in rows] == [{"text": "HI"}, {"text": "THERE"}]


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_task_module_that_cannot_be_found_is_one_line_and_exit_code_1(
    project: Path, command: str,
) -> None:
    done = run_batchd(project, command, tasks="myproj.tasks,nope.tasks",
                      database_url=f"sqlite:///{project / 'x.db'}")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "'nope.tasks'" in lines[0] and "BATCHD_TASKS" in lines[0]
    assert str(project) in lines[0]  # where it looked
    assert "serving" not in done.stderr


def test_a_task_module_whose_own_import_fails_names_the_file_and_line(project: Path) -> None:
    (project / "myproj" / "broken.py").write_text("import os\nimport no_such_dependency\n")
    done = run_batchd(project, "worker", tasks="myproj.broken",
                      database_url=f"sqlite:///{project / 'x.db'}")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "'myproj.broken'" in line and "BATCHD_TASKS" in line
    assert "No module named 'no_such_dependency'" in line
    assert f"{project / 'myproj' / 'broken.py'}, line 2" in line


def test_a_mixed_fleet_runs_each_task_on_a_worker_that_has_it(
    start: Callable[..., UserProcess],
) -> None:
    srv = start("serve", tasks="myproj.tasks", run_worker="false")
    plain = start("worker", tasks="")  # the built-in tasks only: no shout
    with srv.client() as c:
        shouts = submit(c, "shout", [{"text": f"t{i}"} for i in range(5)])
        echo = submit(c, "echo", [{"n": i} for i in range(5)])
        # The plain worker runs what it has ...
        assert wait_batch(c, echo["id"])["status"] == "completed"
        # ... and leaves shout's items queued for a worker that has it: none failed.
        b = c.get(f"/api/batches/{shouts['id']}").json()
        assert b["counts"]["queued"] == 5 and b["counts"]["failed"] == 0, b["counts"]
        [warning] = b["warnings"]
        assert warning["code"] == "task_not_served" and warning["task"] == "shout"
        assert warning["workers"] == 1 and "BATCHD_TASKS" in warning["message"]
        # The plain worker said at start-up what it lacks that the server has.
        assert "BATCHD_TASKS: server " in plain.log_since_start()
        assert "'myproj.tasks'" in plain.log_since_start()

        start("worker", tasks="myproj.tasks")
        done = wait_batch(c, shouts["id"])
        assert done["status"] == "completed" and done["counts"]["succeeded"] == 5, done
        assert done["warnings"] == []
        failed = c.get(f"/api/batches/{shouts['id']}/items", params={"status": "failed"})
        assert failed.json()["data"] == []


def test_batchd_status_shows_that_no_worker_is_running(
    start: Callable[..., UserProcess], project: Path,
) -> None:
    srv = start("serve", tasks="myproj.tasks", run_worker="false")
    worker = start("worker", tasks="myproj.tasks", announce_interval_s=0.3)
    with srv.client() as c:
        assert wait_batch(c, submit(c, "shout", [{"text": "a"}])["id"])["status"] == "completed"
        worker.kill()  # no goodbye: its announcement expires
        b = submit(c, "shout", [{"text": "b"}])

        def warned() -> list[dict[str, Any]]:
            got: list[dict[str, Any]] = c.get(f"/api/batches/{b['id']}").json()["warnings"]
            return got

        [warning] = wait_until(warned, what="the task_not_served warning")
    assert warning["workers"] == 0 and "no worker is running" in warning["message"]
    shown = subprocess.run(
        [BATCHD, "status", b["id"]], cwd=project, capture_output=True, text=True,
        env={**user_env(), "BATCHD_URL": srv.url, "BATCHD_API_KEY": srv.admin_key,
             "COLUMNS": "300"}, timeout=scaled(30))
    assert shown.returncode == 0, shown.stderr
    assert "warning" in shown.stdout and "no worker is running" in shown.stdout
