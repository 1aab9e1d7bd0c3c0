"""pipeline/core/profile.py: step times summed over threads and as wall time, and a child's CPU seconds."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from pipeline.core.profile import StepTimes, child_cpu_seconds, cpu_at_exit


def test_sum_counts_every_thread_and_wall_counts_overlaps_once():
    times = StepTimes()
    times.add("a", 0.0, 2.0)
    times.add("a", 1.0, 3.0)      # overlaps the first: 4 s summed, 3 s of wall
    times.add("a", 5.0, 6.0)
    times.add("b", 0.5, 0.75)
    times.add_cpu("a", 10.0)      # a child's CPU counts in the sum only
    assert times.summed() == pytest.approx({"a": 15.0, "b": 0.25})
    assert times.wall() == pytest.approx({"a": 4.0, "b": 0.25})


def test_a_nested_interval_adds_no_wall_time():
    times = StepTimes()
    times.add("a", 0.0, 10.0)
    times.add("a", 2.0, 3.0)
    assert times.wall()["a"] == pytest.approx(10.0)


def test_steps_from_threads_and_merge():
    times = StepTimes()

    def work():
        with times.step("sleep"):
            time.sleep(0.05)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other = StepTimes()
    other.add("x", 0.0, 1.0)
    times.merge(other)
    summed, wall = times.summed(), times.wall()
    assert summed["sleep"] >= 0.19 and wall["sleep"] < 0.75 * summed["sleep"], (summed, wall)
    assert summed["x"] == pytest.approx(1.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cpu_of_a_child_is_read_before_it_is_reaped():
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass\n"
    proc = subprocess.Popen([sys.executable, "-c", busy])
    seconds = cpu_at_exit(proc.pid)
    assert proc.wait() == 0
    assert seconds is not None and 0.25 <= seconds <= 3.0, seconds
    assert child_cpu_seconds(proc.pid) is None        # reaped: gone from /proc
