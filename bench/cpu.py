"""CPU time spent by the system under test, per round: a figure a shared machine barely moves.

Throughput on a shared 2-core machine swings with the neighbours' load; the CPU seconds that
tally's processes spend per payment hardly do. The meter adds up user and system time of every
process the bench started (each in its own process group, pool children included) and of the
PostgreSQL backends connected to the bench database. Redis is shared with others and is left
out; it is a few percent.
"""

import os
from dataclasses import dataclass

from bench.environment import DATABASE_NAME

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSnapshot:
    seconds_by_pid: dict[int, float]

    def since(self, earlier: "CpuSnapshot") -> float:
        """CPU seconds spent between the two snapshots by processes alive at this one."""
        return sum(
            max(now - earlier.seconds_by_pid.get(pid, 0.0), 0.0)
            for pid, now in self.seconds_by_pid.items()
        )


def snapshot(process_groups: set[int]) -> CpuSnapshot:
    """CPU seconds so far of the processes in these groups and of the bench's DB backends."""
    seconds: dict[int, float] = {}
    backends = _database_backends()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is None:
            continue
        group, cpu = stat
        if group in process_groups or int(entry) in backends:
            seconds[int(entry)] = cpu
    return CpuSnapshot(seconds)


def _stat(pid: int) -> tuple[int, float] | None:
    """(process group, CPU seconds) from /proc/PID/stat; None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state, ppid, pgrp, ... utime is the 14th field, stime the 15th.
    return int(fields[2]), (int(fields[11]) + int(fields[12])) / _TICKS


def _database_backends() -> set[int]:
    """PostgreSQL backends serving the bench database, except the bench's own connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [DATABASE_NAME],
        )
        return {row[0] for row in cursor.fetchall()}
