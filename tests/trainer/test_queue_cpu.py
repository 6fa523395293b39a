"""The queue on this CPU box, for real: two `train --queue` runs of the demo config, the terminal killed in between."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from sft_tui.core.runs.queue_edits import queued_runs
from sft_tui.core.runs.store import RunStore
from tests.trainer.conftest import DEMO, FINISH_S, START_S, state, wait_for


def test_a_second_queued_run_waits_at_position_1_until_the_first_completes_then_runs(runs_home, tiny_model, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text((DEMO / "demo.toml").read_text().replace('name = "tiny-demo-model"', f'name = "{tiny_model}"')
                      .replace('train = "train.jsonl"', f'train = "{DEMO / "train.jsonl"}"').replace('eval = "eval.jsonl"', f'eval = "{DEMO / "eval.jsonl"}"'))
    train = f"{sys.executable} -m sft_tui.cli train {config} --queue --set training.max_steps=40"
    # one login shell queues both runs, then lingers like an SSH session until it is killed
    shell = subprocess.Popen(["bash", "-c", f"{train} && {train} && echo queued-both && sleep 600"], start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert "queued-both" in "".join(iter_until(shell, "queued-both")), "the shell did not queue both runs"
    store = RunStore()
    second, first = store.run_dirs()  # newest first
    os.killpg(shell.pid, signal.SIGKILL)  # the terminal and everything in its session are gone
    shell.wait()

    seen_waiting = 0
    while True:  # the second's state is read before the first's: if the first has not completed, the second must still wait
        waiting = [(q.id, q.position, q.owner) for q in queued_runs(store)]
        second_state, first_state = state(second), state(first)
        if first_state == "completed":
            break
        assert first_state in ("queued", "running"), first_state
        assert second_state == "queued" and waiting == [(second.id, 1, first.read_status().owner)], (second_state, waiting)
        seen_waiting += 1
        time.sleep(0.2)
        assert seen_waiting < FINISH_S * 5, "the first run never completed"
    assert seen_waiting > 0
    wait_for(lambda: state(second) != "queued", START_S, "the second run to leave the queue")
    wait_for(lambda: state(second) not in ("queued", "running"), FINISH_S, "the second run to finish")
    assert state(second) == "completed" and second.read_status().step == 40
    assert [e.event for e in second.read_new_rows().events][:2] == ["admitted", "started"]
    assert queued_runs(store) == []


def iter_until(process: subprocess.Popen, marker: str):
    """Lines of a process's output up to and including the one holding `marker` (or its end)."""
    for line in process.stdout:
        yield line
        if marker in line:
            return


def test_cancelling_a_queued_run_ends_its_waiter_and_it_never_trains(runs_home, tiny_model, cli):
    from sft_tui.core.runs.jobs import request_stop, wait_until_inactive
    from sft_tui.core.runs.liveness import pid_is_alive

    overrides = ["--set", f"model.name={tiny_model}", "--set", f"data.train={DEMO / 'train.jsonl'}", "--set", f"data.eval={DEMO / 'eval.jsonl'}"]
    assert cli("train", str(DEMO / "demo.toml"), *overrides, "--set", "training.max_steps=400", "--queue").code == 0
    assert cli("train", str(DEMO / "demo.toml"), *overrides, "--queue").code == 0
    second, first = RunStore().run_dirs()
    wait_for(lambda: state(first) == "running", START_S, "the first run to start")
    waiter = second.read_status().pid
    assert state(second) == "queued" and pid_is_alive(waiter)
    cancelled = cli("queue", "cancel", second.id)
    assert cancelled.code == 0 and "it never started" in cancelled.out
    wait_for(lambda: not pid_is_alive(waiter), START_S, "the waiter to end")
    assert state(second) == "stopped" and "left the queue before starting" in second.log_path.read_text()
    assert [e.event for e in second.read_new_rows().events] == ["cancelled"] and second.latest_checkpoint() is None
    request_stop(first)
    assert wait_until_inactive(first, FINISH_S) == "stopped"


def test_a_waiter_told_to_end_leaves_its_run_queued_and_a_teammates_stop_file_stops_a_trainer(runs_home, tiny_model, cli):
    from sft_tui.core.runs.jobs import wait_until_inactive
    from sft_tui.core.runs.liveness import pid_is_alive

    overrides = ["--set", f"model.name={tiny_model}", "--set", f"data.train={DEMO / 'train.jsonl'}", "--set", f"data.eval={DEMO / 'eval.jsonl'}"]
    assert cli("train", str(DEMO / "demo.toml"), *overrides, "--set", "training.max_steps=400", "--set", "training.save_steps=5",
               "--queue").code == 0
    assert cli("train", str(DEMO / "demo.toml"), *overrides, "--set", "training.max_steps=20", "--queue").code == 0
    second, first = RunStore().run_dirs()
    wait_for(lambda: state(first) == "running" and (first.read_status().step or 0) >= 6, START_S, "the first run to step")
    waiter = second.read_status().pid
    os.kill(waiter, signal.SIGTERM)  # what a shutdown or a logout sends every process
    wait_for(lambda: not pid_is_alive(waiter), START_S, "the waiter to end")
    assert second.read_status().state == "queued" and [q.id for q in queued_runs(RunStore())] == [second.id]
    assert cli("queue").code == 0  # anyone of the owner's sft-tui starts a new waiter
    assert second.read_status().pid != waiter and pid_is_alive(second.read_status().pid)
    first.stop_request_path.write_text("a teammate's stop --force")  # no signal: the trainer watches this file
    assert wait_until_inactive(first, FINISH_S) == "stopped" and first.latest_checkpoint() is not None
    wait_for(lambda: state(second) == "completed", FINISH_S, "the second run to start and complete")
