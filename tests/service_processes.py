"""Process checks the tf.data service tests share (Linux `/proc`)."""

import os

import pytest


def is_alive(pid):
    """True if process `pid` exists and is not a zombie (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes_mentioning(text):
    """PIDs of live processes whose command line contains `text` (Linux)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmdline and is_alive(entry):
            found.append(int(entry))
    return found


def assert_all_gone(cluster):
    servers = [cluster.dispatcher, *cluster.workers]
    assert all(not server.is_running() for server in servers), servers
    for server in servers:
        with pytest.raises(ProcessLookupError):
            os.killpg(server.pid, 0)
