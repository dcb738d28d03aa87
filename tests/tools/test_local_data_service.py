"""`keras_dynmask.tools.local_data_service`: the local cluster's processes.

Start-up is bounded, servers die with the process that started them, and
arguments are checked.
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
from keras_dynmask.tools.local_data_service import server_command
from keras_dynmask.tools.local_data_service import server_environment


def test_start_up_is_bounded_and_leaves_no_process(tmp_path):
    with pytest.raises(TimeoutError, match="start_timeout_s=0.5"):
        LocalDataService(num_workers=2, start_timeout_s=0.5, log_dir=str(tmp_path))
    assert processes_mentioning(str(tmp_path)) == []


def test_servers_exit_when_the_process_that_started_them_dies(tmp_path):
    ready_file = str(tmp_path / "dispatcher.ready")
    # A parent without TensorFlow starts a dispatcher, waits until it
    # serves, prints its pid and dies without stopping it.
    parent = f"""
import os, subprocess, sys, time
command = {server_command("dispatcher", ready_file, 0)!r}
command[command.index("--parent-pid") + 1] = str(os.getpid())
server = subprocess.Popen(command, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 120
while not os.path.exists({ready_file!r}) and time.monotonic() < deadline:
    time.sleep(0.05)
print(server.pid, flush=True)
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
    server_pid = int(result.stdout.split()[-1])
    try:
        assert os.path.exists(ready_file), result.stderr[-3000:]
        deadline = time.monotonic() + 15
        while is_alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not is_alive(server_pid), "the dispatcher outlived its parent"
    finally:
        if is_alive(server_pid):
            os.killpg(server_pid, signal.SIGKILL)


def test_cluster_arguments_are_validated():
    with pytest.raises(ValueError, match="num_workers=-1"):
        LocalDataService(num_workers=-1)
    with pytest.raises(ValueError, match="start_timeout_s=0"):
        LocalDataService(start_timeout_s=0)
    with pytest.raises(ValueError, match="import_modules='tensorflow_text'"):
        LocalDataService(import_modules="tensorflow_text")
