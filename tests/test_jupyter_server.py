"""The "open it in JupyterLab" path, tested: a Jupyter server on a free local port opens a notebook
through its REST API, a kernel runs the notebook's parameters cell and first code cell at the smoke
profile over the kernel's websocket, and everything shuts down."""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from robust_saliency.results import repo_root

pytest.importorskip("jupyter_server")
tornado_ws = pytest.importorskip("tornado.websocket")

NOTEBOOK = "04_marginal_density.ipynb"
TOKEN = uuid.uuid4().hex


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base, method, path, body=None):
    req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {TOKEN}",
                                                                           "Content-Type": "application/json"},
                                 data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read().decode()
        return resp.status, (json.loads(text) if text else None)


def _page(base, path):
    with urllib.request.urlopen(urllib.request.Request(f"{base}{path}", headers={"Authorization": f"token {TOKEN}"}),
                                timeout=30) as resp:
        return resp.status


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    env = {**os.environ, "ROBUST_SALIENCY_PROFILE": "smoke", "ROBUST_SALIENCY_PROGRESS": "0",
           "ROBUST_SALIENCY_CACHE": str(tmp_path / "cache"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
                             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
                             f"--ServerApp.root_dir={repo_root() / 'notebooks'}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if _api(base, "GET", "/api/status")[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("the Jupyter server did not answer within 60 s:\n" + (tmp_path / "server.log").read_text()[-3000:])
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _message(code, session):
    return {"header": {"msg_id": uuid.uuid4().hex, "username": "test", "session": session, "msg_type": "execute_request",
                       "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}


async def _execute(ws, code, session, timeout=180):
    """Run ``code``; return (execute_reply content, iopub messages of that request)."""
    msg = _message(code, session)
    await ws.write_message(json.dumps(msg))
    reply, iopub, idle = None, [], False
    deadline = time.monotonic() + timeout
    while reply is None or not idle:
        raw = await asyncio.wait_for(ws.read_message(), timeout=max(1.0, deadline - time.monotonic()))
        assert raw is not None, "the kernel's websocket closed"
        m = json.loads(raw)
        if m.get("parent_header", {}).get("msg_id") != msg["header"]["msg_id"]:
            continue
        if m["channel"] == "shell" and m["msg_type"] == "execute_reply":
            reply = m["content"]
        elif m["channel"] == "iopub":
            iopub.append(m)
            idle |= m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
    return reply, iopub


def test_a_kernel_runs_the_parameters_and_first_code_cell_through_the_server(server):
    assert _page(server, "/lab") == 200  # JupyterLab itself is served
    status, model = _api(server, "GET", f"/api/contents/{NOTEBOOK}?content=1&type=notebook")
    assert status == 200 and model["type"] == "notebook"
    cells = [c for c in model["content"]["cells"] if c["cell_type"] == "code"]
    params = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    run = [cells[params]["source"], cells[params + 1]["source"]]
    status, sess = _api(server, "POST", "/api/sessions", {"path": NOTEBOOK, "type": "notebook", "name": NOTEBOOK,
                                                          "kernel": {"name": "python3"}})
    assert status == 201
    kernel = sess["kernel"]["id"]

    async def drive():
        ws_url = server.replace("http", "ws") + f"/api/kernels/{kernel}/channels?token={TOKEN}"
        ws = await tornado_ws.websocket_connect(ws_url)
        try:
            out = [await _execute(ws, code, sess["id"]) for code in run]
            out.append(await _execute(ws, "print(profile, params['seeds'], type(params).__name__)", sess["id"]))
        finally:
            ws.close()
        return out

    try:
        results = asyncio.run(drive())
    finally:
        assert _api(server, "DELETE", f"/api/sessions/{sess['id']}")[0] == 204
    for reply, iopub in results:
        errors = [m["content"] for m in iopub if m["msg_type"] == "error"]
        assert reply["status"] == "ok" and not errors, errors
    table = [m for m in results[1][1] if m["msg_type"] == "execute_result"]
    assert table and "block_digits" in table[0]["content"]["data"]["text/plain"]  # the first cell's settings table
    printed = "".join(m["content"]["text"] for m in results[2][1] if m["msg_type"] == "stream")
    assert printed.split()[:2] == ["smoke", "[0]"]  # the profile came from the server's environment
    assert kernel not in [k["id"] for k in _api(server, "GET", "/api/kernels")[1]]
