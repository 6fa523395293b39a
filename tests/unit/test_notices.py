"""What the TUI announces: runs and jobs that ended between two listings, and the names it shows."""

from __future__ import annotations

from dataclasses import replace

from sft_tui.core.runs.notices import display_names, run_notices, short_name
from sft_tui.core.runs.schema import JobError, JobOverview, RunOverview


def overview(run_id: str, state: str, **kw) -> RunOverview:
    base = dict(model="m", method="lora", step=10, max_steps=100, last_loss=1.234, started_at="", updated_at="",
                heartbeat_age_s=None, error=None, path="")
    return RunOverview(id=run_id, state=state, **{**base, **kw})


def test_the_first_listing_is_a_baseline_not_news():
    assert run_notices(None, [overview("20261123-093000-a", "completed")], 1.0) == []


def test_each_way_a_run_ends_is_told_with_what_to_know():
    before = [overview(f"20261123-09300{i}-r{i}", "running") for i in range(4)]
    after = [replace(before[0], state="completed"), replace(before[1], state="stopped"),
             replace(before[2], state="failed", error=JobError("oom", "out of memory at step 10", "micro_batch_size 2 fits")),
             replace(before[3], state="crashed", error=JobError("crash", "trainer killed by signal 9 (SIGKILL)", "see dmesg"))]
    notices = run_notices(before, after, 5.0)
    assert [(n.name, n.severity) for n in notices] == [("r0", "information"), ("r1", "warning"), ("r2", "error"), ("r3", "error")]
    assert notices[0].line == "r0 completed at step 10: loss 1.234"
    assert notices[2].line == "r2 ran out of GPU memory at step 10: micro_batch_size 2 fits"
    assert notices[3].line == "r3 crashed at step 10: crash: trainer killed by signal 9 (SIGKILL)"
    assert run_notices(after, after, 6.0) == []  # told once


def test_a_job_ending_is_told_and_a_new_runs_old_jobs_are_not():
    job = JobOverview("eval-1", "eval", "running")
    before = [overview("20261123-093000-a", "completed", jobs=(job,))]
    after = [overview("20261123-093000-a", "completed", jobs=(replace(job, state="completed", result="loss 3.0 -> 1.0"),)),
             overview("20261123-093500-b", "completed", jobs=(replace(job, state="failed"),))]  # appeared already ended
    lines = [n.line for n in run_notices(before, after, 1.0)]
    assert lines == ["a eval-1 completed: loss 3.0 -> 1.0", "b completed at step 10: loss 1.234"]


def test_names_drop_the_date_and_repeated_names_get_their_start_time():
    assert short_name("20261123-093000-json-lora") == "json-lora" and short_name("my-run") == "my-run"
    ids = ["20261123-235522-demo", "20261123-234751-demo", "20261123-234751-demo-2", "20261123-120000-other"]
    assert display_names(ids) == {"20261123-235522-demo": "demo 23:55", "20261123-234751-demo": "demo 23:47",
                                  "20261123-234751-demo-2": "demo-2", "20261123-120000-other": "other"}
    same_minute = ["20261123-235522-demo", "20261123-235501-demo"]
    assert display_names(same_minute) == {"20261123-235522-demo": "demo 23:55:22", "20261123-235501-demo": "demo 23:55:01"}


def test_a_queued_run_starting_or_being_cancelled_is_told_as_such():
    waiting = [overview("20261123-090000-a", "queued", queue_position=1), overview("20261123-090000-b", "queued", queue_position=2)]
    later = [overview("20261123-090000-a", "queued", queue_position=None, gpus=(1,)), overview("20261123-090000-b", "stopped")]
    notices = run_notices(waiting, later, 5.0)
    assert [(n.name, n.severity, n.message) for n in notices] == [
        ("a", "information", "left the queue: starting on GPU 1"), ("b", "warning", "was cancelled in the queue before it started")]
    assert run_notices(waiting, waiting, 6.0) == []  # still waiting: nothing to say
