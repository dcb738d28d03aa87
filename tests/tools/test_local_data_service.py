"""`keras_dynmask.tools.local_data_service`: the local cluster's processes.

Start-up is bounded; stopping sends SIGTERM, then SIGKILL to a server that
ignores it; dispatcher and workers die with the process that started
them; arguments are checked.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from service_processes import is_alive
from service_processes import processes_mentioning
from keras_dynmask.tools.local_data_service import LocalDataService
from keras_dynmask.tools.local_data_service import ServerProcess
from keras_dynmask.tools.local_data_service import server_command
from keras_dynmask.tools.local_data_service import server_environment


def test_start_up_is_bounded_and_leaves_no_process(tmp_path):
    with pytest.raises(TimeoutError, match="start_timeout_s=0.5"):
        LocalDataService(num_workers=2, start_timeout_s=0.5, log_dir=str(tmp_path))
    assert processes_mentioning(str(tmp_path)) == []


def test_servers_exit_when_the_process_that_started_them_dies(tmp_path):
    dispatcher_ready = str(tmp_path / "dispatcher.ready")
    worker_ready = str(tmp_path / "worker.ready")
    address_file = str(tmp_path / "dispatcher.address")
    # A parent without TensorFlow starts a dispatcher and a worker, waits
    # until both serve, prints their pids and dies without stopping them.
    parent = f"""
import json, os, subprocess, sys, time
def start(command):
    command[command.index("--parent-pid") + 1] = str(os.getpid())
    return subprocess.Popen(command, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def wait_for(path):
    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
dispatcher = start({server_command("dispatcher", dispatcher_ready, 0)!r})
worker = start({server_command("worker", worker_ready, 0,
                               flags=["--dispatcher-address-file", address_file])!r})
wait_for({dispatcher_ready!r})
with open({dispatcher_ready!r}) as handle:
    address = json.load(handle)["address"]
with open({address_file!r} + ".tmp", "w") as handle:
    handle.write(address)
os.replace({address_file!r} + ".tmp", {address_file!r})
wait_for({worker_ready!r})
print(dispatcher.pid, worker.pid, flush=True)
os._exit(0)
"""
    result = subprocess.run(
        [sys.executable, "-c", parent],
        capture_output=True,
        text=True,
        timeout=150,
        env=server_environment(),
    )
    assert result.returncode == 0 and result.stdout.strip(), result.stderr[-3000:]
    server_pids = [int(pid) for pid in result.stdout.split()[-2:]]
    try:
        assert os.path.exists(dispatcher_ready), result.stderr[-3000:]
        assert os.path.exists(worker_ready), result.stderr[-3000:]
        deadline = time.monotonic() + 30
        while any(is_alive(pid) for pid in server_pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        dispatcher_pid, worker_pid = server_pids
        assert not is_alive(dispatcher_pid), "the dispatcher outlived its parent"
        assert not is_alive(worker_pid), "the worker outlived its parent"
    finally:
        for pid in server_pids:
            if is_alive(pid):
                os.killpg(pid, signal.SIGKILL)


def test_stop_ends_servers_with_sigterm(tmp_path):
    with LocalDataService(num_workers=1, log_dir=str(tmp_path)) as cluster:
        servers = [cluster.dispatcher, *cluster.workers]
        assert all(server.is_running() for server in servers)
    # Each server handled SIGTERM and exited by itself (code 0), not killed.
    assert [server.process.returncode for server in servers] == [0, 0]
    for server in servers:
        assert "stopped" in server.log_tail()
    assert processes_mentioning(str(tmp_path)) == []


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path):
    # A process (and a child in its group) that ignores SIGTERM.
    stubborn = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", stubborn, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child_pid = int(process.stdout.readline())
    server = ServerProcess("worker", process, str(tmp_path / "none.log"))
    try:
        started = time.monotonic()
        returncode = server.stop(timeout_s=1.0)
        waited = time.monotonic() - started
        assert returncode == -signal.SIGKILL
        assert waited >= 1.0  # SIGTERM first, SIGKILL only after the timeout
        deadline = time.monotonic() + 10
        while is_alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_alive(child_pid), "the server's child survived"
    finally:
        for pid in (process.pid, child_pid):
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.stdout.close()


def test_cluster_arguments_are_validated():
    with pytest.raises(ValueError, match="num_workers=-1"):
        LocalDataService(num_workers=-1)
    with pytest.raises(ValueError, match="start_timeout_s=0"):
        LocalDataService(start_timeout_s=0)
    with pytest.raises(ValueError, match="import_modules='tensorflow_text'"):
        LocalDataService(import_modules="tensorflow_text")
