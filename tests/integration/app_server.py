"""Start `ecg-app serve` in a subprocess on a free port with its own data folder, for integration tests.

A real process (not an in-test launch) so the tests cover the CLI entry point, the migrations at start
and the model warm-up exactly as a user runs them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ecg_app.config import DEFAULT_MODEL_DIR, REPO_ROOT

START_TIMEOUT_S = 120
# gradio_client in this process reports each new Client to the Hugging Face Hub unless this is off.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def model_dir() -> Path:
    """The model the server will load: ECG_APP_MODEL_DIR when set, else the shipped model/."""
    return Path(os.environ.get("ECG_APP_MODEL_DIR") or DEFAULT_MODEL_DIR)


def has_model() -> bool:
    return (model_dir() / "model.json").is_file()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ecg-app serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"ecg-app serve not ready after {timeout}s:\n{log.read_text()[-4000:]}")


@dataclass(frozen=True)
class AppProcess:
    """A started server: its URL, the `ecg-app serve` process itself (no wrapper) and its log file."""

    url: str
    proc: subprocess.Popen
    log: Path


@contextmanager
def app_process(data_dir: Path, users: str | None = None) -> Iterator[AppProcess]:
    """Start a fresh server storing into `data_dir`; stop it afterwards (a no-op if a test killed it)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECG_APP_")}
    env.update(
        ECG_APP_DATA_DIR=str(data_dir),
        ECG_APP_MODEL_DIR=str(model_dir()),
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    if users:
        env["ECG_APP_USERS"] = users
    log = data_dir / "server.log"
    url = f"http://127.0.0.1:{port}/"
    with open(log, "ab") as out:  # appended: a restart on the same data dir keeps the first run's log
        proc = subprocess.Popen(
            [sys.executable, "-m", "ecg_app.cli", "serve", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_up(url, proc, log)
            yield AppProcess(url, proc, log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def running_app(data_dir: Path, users: str | None = None) -> Iterator[str]:
    """Yield the base URL of a fresh server storing into `data_dir`; stop it afterwards."""
    with app_process(data_dir, users) as app:
        yield app.url
