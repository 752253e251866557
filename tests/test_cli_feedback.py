"""``instruct-env add-evaluator`` and ``instruct-env serve``."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from deadlines import deadline_s

from agents.cli import main

httpx = pytest.importorskip("httpx")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_add_evaluator_prints_a_working_token(tmp_path, capsys):
    from instruct_env.feedback import FeedbackStore

    db = tmp_path / "fb.db"
    assert main(["add-evaluator", "--store", str(db), "alice", "--admin"]) == 0
    out = capsys.readouterr().out
    token = out.strip().rsplit(" ", 1)[-1]
    assert out.startswith("admin 'alice' created")
    store = FeedbackStore(str(db))
    assert store.authenticate(token).name == "alice"
    assert token.encode() not in db.read_bytes()  # stored hashed only
    store.close()
    assert main(["add-evaluator", "--store", str(db), "alice"]) == 2  # name taken: clear error, exit 2
    assert "alice" in capsys.readouterr().err


def test_serve_binds_loopback_and_answers(tmp_path):
    db, port = tmp_path / "fb.db", _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "serve", "--store", str(db), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + deadline_s(120)  # stops a hang only
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.3)
        assert response.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/api/next", timeout=5).status_code == 401  # no token
        # Loopback only: another local address does not reach it (a 0.0.0.0 bind would answer there).
        # Linux routes all of 127.0.0.0/8 to the loopback device, so 127.0.0.2 is such an address.
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))  # the address exists here (else this raises: the check needs it)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.2:{port}/api/health", timeout=5)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_serve_refuses_a_policy_path_that_is_no_model_folder(tmp_path, capsys):
    assert main(["serve", "--store", str(tmp_path / "fb.db"), "--policy", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--policy must be a model folder saved by instruct-env" in err and "has no config.json" in err
