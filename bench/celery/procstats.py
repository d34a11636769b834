"""Linux /proc readings for the Celery bench, the same ones Fleet's bench takes (bench/Fleet.Bench):
CPU seconds (utime+stime), peak RSS (VmHWM, resettable through clear_refs), children, and the process listening on
a loopback TCP port (how the PostgreSQL and RabbitMQ servers of the measured setup are found, and no one else's).
Every reading returns None or an empty list when /proc cannot tell.
"""

import os

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return text[text.rfind(")") + 1:].split()


def cpu_seconds(pid, with_reaped_children=False):
    """utime+stime of `pid` (plus cutime+cstime with `with_reaped_children`), in seconds."""
    f = _stat_fields(pid)
    if f is None:
        return None
    # After "pid (comm)": [0]=state [1]=ppid ... [11]=utime [12]=stime [13]=cutime [14]=cstime
    ticks = int(f[11]) + int(f[12])
    if with_reaped_children:
        ticks += int(f[13]) + int(f[14])
    return ticks / TICKS


def children(parent):
    result = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            f = _stat_fields(int(name))
            if f is not None and int(f[1]) == parent:
                result.append(int(name))
    return result


def tree_cpu_seconds(pid):
    """CPU seconds of `pid` with its reaped children and its live children: a child that exits between two
    readings moves from its own count into its parent's reaped count, so the difference of two readings holds."""
    total = cpu_seconds(pid, with_reaped_children=True) or 0.0
    for child in children(pid):
        total += cpu_seconds(child) or 0.0
    return total


def _status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line[len(key):].split()[0])
    except OSError:
        return None
    return None


def peak_rss_bytes(pid):
    kb = _status_kb(pid, "VmHWM:")
    return None if kb is None else kb * 1024


def try_reset_peak_rss(pid):
    """VmHWM := current RSS (echo 5 > /proc/PID/clear_refs), so that VmHWM afterwards is the peak of the run."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def listener_pid(port):
    """The pid of the process listening on TCP `port` (IPv4 or IPv6), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) >= 10 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{parts[9]}]")
    if not inodes:
        return None
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{name}/fd/{fd}") in inodes:
                    return int(name)
            except OSError:
                pass
    return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
