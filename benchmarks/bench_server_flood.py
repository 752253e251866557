"""The feedback server under a flood of large request bodies: its memory and ``/api/health`` latency.

Starts ``instruct-env serve`` (``serve()``) on a fresh SQLite store in a subprocess, measures its
resident memory and the health check's latency at rest, then lets ``--clients`` threads send
``--body-mb`` MB POST bodies to the API back to back for ``--seconds`` seconds, in three ways:

* ``no token, Content-Length``: the size is declared; refused (401) before the body is read;
* ``no token, chunked``: no size declared; refused (401) before the body is read;
* ``token, chunked``: an evaluator's valid token; the body is read up to ``max_body_bytes`` (1 MiB),
  then refused with 413.

Meanwhile the server's resident memory is sampled every 50 ms and ``/api/health`` is called every
50 ms, from this process; the flooding clients run in a process of their own, so that they do not
hold up the prober's own threads (all three share the machine's cores with the server). The result goes to the "Feedback server under a body flood" section of benchmarks/README.md
(``--no-readme`` prints it only)::

    python -m benchmarks.bench_server_flood                   # 10 clients x 50 MB bodies, 10 s per mode
    python -m benchmarks.bench_server_flood --quick --no-readme  # a smoke run
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks._common import provenance, write_section

SERVER = (
    "import sys\n"
    "from instruct_env.feedback.server import serve\n"
    "serve(sys.argv[1], port=int(sys.argv[2]), log_level='error')\n"
)
REPO = Path(__file__).resolve().parents[1]
MODES = ("no token, Content-Length", "no token, chunked", "token, chunked")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def health_ms(port: int) -> float:
    """One ``GET /api/health`` on a new connection, in milliseconds (connect included)."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    if not reply.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"/api/health answered {reply[:80]!r}")
    return (time.perf_counter() - start) * 1000


def flood(port: int, mode: str, body_bytes: int, token: str, stop, sent) -> None:
    """Send ``body_bytes`` POST bodies to ``/api/answers`` one after another until ``stop`` is set."""
    chunk = b"x" * (1 << 20)
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)  # one chunk of a chunked body, built once
    while not stop.is_set():
        headers = [b"POST /api/answers HTTP/1.1", b"Host: 127.0.0.1", b"Content-Type: application/json",
                   b"Connection: close"]
        if mode.startswith("token"):
            headers.append(f"Authorization: Bearer {token}".encode())
        chunked = mode.endswith("chunked")
        headers.append(b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {body_bytes}".encode())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                conn.sendall(b"\r\n".join(headers) + b"\r\n\r\n")
                left = body_bytes
                while left > 0 and not stop.is_set():
                    size = min(left, len(chunk))
                    if size == len(chunk):
                        conn.sendall(framed if chunked else chunk)
                    else:
                        conn.sendall(b"%x\r\n%s\r\n" % (size, chunk[:size]) if chunked else chunk[:size])
                    left -= size
                    with sent.get_lock():
                        sent.value += size
                if chunked and left == 0:
                    conn.sendall(b"0\r\n\r\n")
                conn.recv(4096)
        except OSError:  # the server answered and closed while the body was still coming: expected
            pass


def flooders(port: int, mode: str, clients: int, body_bytes: int, token: str, stop, sent) -> None:
    """The flooding clients: ``clients`` threads of one process."""
    threads = [threading.Thread(target=flood, args=(port, mode, body_bytes, token, stop, sent), daemon=True)
               for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure(port: int, pid: int, mode: str, clients: int, body_bytes: int, seconds: float, token: str) -> dict:
    ctx = mp.get_context("spawn")
    stop, sent = ctx.Event(), ctx.Value("q", 0)
    process = ctx.Process(target=flooders, args=(port, mode, clients, body_bytes, token, stop, sent), daemon=True)
    process.start()
    while sent.value == 0 and process.is_alive():  # the flood is under way
        time.sleep(0.01)
    memory, latencies = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        memory.append(rss_mb(pid))
        latencies.append(health_ms(port))
        time.sleep(0.05)
    stop.set()
    process.join(60)
    if process.is_alive():
        process.kill()
    latencies.sort()
    return {"mode": mode, "peak_mb": max(memory), "health_p50": statistics.median(latencies),
            "health_p95": latencies[int(0.95 * (len(latencies) - 1))], "health_max": latencies[-1],
            "sent_gb": sent.value / 1e9, "samples": len(latencies)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10, help="flooding clients at once (default 10)")
    parser.add_argument("--body-mb", type=int, default=50, help="size of each body in MB (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="flood duration per mode (default 10)")
    parser.add_argument("--quick", action="store_true", help="2 clients, 5 MB bodies, 0.5 s per mode")
    parser.add_argument("--no-readme", action="store_true", help="print the table, leave benchmarks/README.md alone")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.body_mb, args.seconds = 2, 5, 0.5
    from instruct_env.feedback import FeedbackStore

    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "flood.db")
        with FeedbackStore(db) as store:
            _, token = store.add_evaluator("flooder")
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-c", SERVER, db, str(port)], env=env, cwd=REPO)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    health_ms(port)
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the server did not start") from None
                    time.sleep(0.1)
            for _ in range(20):  # warm up
                health_ms(port)
            idle = [health_ms(port) for _ in range(50)]
            idle_mb = rss_mb(proc.pid)
            rows = [measure(port, proc.pid, mode, args.clients, args.body_mb * 1_000_000, args.seconds, token)
                    for mode in MODES]
        finally:
            proc.terminate()
            proc.wait(30)
    idle.sort()
    lines = [
        f"{args.clients} clients send {args.body_mb} MB POST bodies to `/api/answers` back to back for "
        f"{args.seconds:g} s per mode (from a process of their own); the server's resident memory and "
        "`/api/health` (a new connection each time, every 50 ms) are sampled meanwhile. Goal: memory within "
        "50 MB of idle, health under 100 ms.",
        "",
        f"At rest: {idle_mb:.0f} MB resident; `/api/health` p50 {statistics.median(idle):.1f} ms, "
        f"p95 {idle[int(0.95 * (len(idle) - 1))]:.1f} ms.",
        "",
        "| flood | body data sent | peak memory (MB) | above idle (MB) | health p50 / p95 / max (ms) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['sent_gb']:.1f} GB | {r['peak_mb']:.0f} | {r['peak_mb'] - idle_mb:+.0f} | "
                     f"{r['health_p50']:.1f} / {r['health_p95']:.1f} / {r['health_max']:.1f} |")
    lines += ["", f"Command: `python -m benchmarks.bench_server_flood"
                  f"{'' if args.clients == 10 and args.body_mb == 50 and args.seconds == 10 else ' ...'}`; "
                  f"{provenance()}."]
    text = "\n".join(lines)
    print(text)
    if not (args.no_readme or args.quick):
        write_section("Feedback server under a body flood", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
