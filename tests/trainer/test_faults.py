"""Faults a shared box produces, reproduced for real: a full disk, a read-only folder, a run folder deleted mid-run, a team's umask.

The disk and read-only cases run the real commands inside a private mount namespace
(`unshare -Urm`) with a small or read-only tmpfs: nothing on the host is touched, and no
root is needed where unprivileged user namespaces are allowed. Where they are not, those
tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sft_tui.core.runs.jobs import launch, wait_until_inactive
from sft_tui.core.runs.store import RunStore
from tests.trainer.conftest import DEMO, FINISH_S, START_S, events, run_trainer, state, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-Urm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_namespaces = pytest.mark.skipif(not _namespaces_work(), reason="unprivileged mount namespaces (unshare -Urm) are not allowed here")


def in_namespace(script: str, timeout: float = FINISH_S) -> subprocess.CompletedProcess:
    """Run a bash script in a private mount namespace (mounts there are invisible outside and vanish with it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(["unshare", "-Urm", "bash", "-euc", script], capture_output=True, text=True, timeout=timeout, env=env)


def _demo_config(tmp_path: Path, tiny_model: Path) -> Path:
    config = tmp_path / "run.toml"
    config.write_text((DEMO / "demo.toml").read_text().replace('name = "tiny-demo-model"', f'name = "{tiny_model}"')
                      .replace('train = "train.jsonl"', f'train = "{DEMO / "train.jsonl"}"').replace('eval = "eval.jsonl"', f'eval = "{DEMO / "eval.jsonl"}"'))
    return config


@needs_namespaces
def test_a_full_disk_while_checkpointing_fails_as_disk_with_the_reason(make_run, tmp_path):
    run = make_run("training.max_steps=40", "training.save_steps=10")
    small, out = tmp_path / "small-disk", tmp_path / "out"
    small.mkdir()
    out.mkdir()
    # 1.2 MB: the run's files, the reserve and the first rows fit; the first checkpoint (about 3 MB) does not
    proc = in_namespace(f"""
        mount -t tmpfs -o size=1200k tmpfs {small}
        mkdir -p {small}/runs && cp -a {run.path} {small}/runs/
        {sys.executable} -m sft_tui.trainer {small}/runs/{run.id} > {out}/trainer.out 2>&1 || echo "exit $?" >> {out}/trainer.out
        cp -a {small}/runs/{run.id} {out}/run
    """)
    assert proc.returncode == 0, proc.stderr
    from sft_tui.core.runs.rundir import RunDir

    after = RunDir(out / "run")
    status = after.read_status()
    assert status.state == "failed" and status.error.kind == "disk", status
    assert status.step == 10  # the step it failed at, not a stale one
    assert "no space left on the device at step 10" in status.error.message and "MiB free" in status.error.message
    assert "each checkpoint takes about" in status.error.hint and f"sft-tui resume {run.id}" in status.error.hint
    assert (out / "trainer.out").read_text().rstrip().endswith("exit 1")
    assert f"run {run.id}: failed (disk: no space left" in (out / "trainer.out").read_text()  # the log's last words made it
    assert events(after)[-1].event == "failed" and events(after)[-1].message.startswith("disk: ")
    assert not after.reserve_path.exists()


@needs_namespaces
def test_read_only_home_and_run_dir_end_in_one_line(tiny_model, tmp_path, runs_home):
    config = _demo_config(tmp_path, tiny_model)
    frozen = tmp_path / "frozen-home"
    frozen.mkdir()
    proc = in_namespace(f"""
        mount -t tmpfs -o ro tmpfs {frozen}
        SFT_TUI_HOME={frozen} {sys.executable} -m sft_tui.cli train {config} --set training.max_steps=4
    """)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {frozen}: cannot write where runs live: read-only file system")

    # a run that failed after its first checkpoint, then its folder becomes read-only: resume says so in one line
    from sft_tui.core.config.load import dump_run_config, load_run_config

    resolved = load_run_config(config, ["training.max_steps=20", "training.save_steps=2"])
    run = RunStore().create_run(dump_run_config(resolved.config), "tiny", "lora", name="ro")
    assert run_trainer(run, env={"SFT_TUI_INJECT_OOM_AT_STEP": "3"}).returncode == 1
    assert run.latest_checkpoint() is not None
    proc = in_namespace(f"""
        mount --bind {runs_home} {runs_home} && mount -o remount,bind,ro {runs_home}
        SFT_TUI_HOME={runs_home} {sys.executable} -m sft_tui.cli resume {run.id}
    """)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "read-only file system" in proc.stderr and str(run.path) in proc.stderr
    assert state(run) == "failed"  # nothing the user had was changed


def test_a_run_folder_removed_mid_run_stops_the_trainer_without_re_creating_it(make_run):
    import psutil

    # saves every 5 steps: a trainer that did not notice would re-create the folder at its next save
    run = make_run("training.max_steps=100000", "training.save_steps=5", "training.logging_steps=1")
    launch(run)
    wait_for(lambda: state(run) == "running" and (run.read_status().step or 0) >= 3, START_S, "the run to step")
    trainer = psutil.Process(run.read_status().pid)
    while run.path.exists():  # the trainer may add a file while it goes
        shutil.rmtree(run.path, ignore_errors=True)
    wait_for(lambda: not trainer.is_running() or trainer.status() == psutil.STATUS_ZOMBIE, START_S, "the trainer to stop")
    assert not run.path.exists(), sorted(str(p) for p in run.path.rglob("*"))
    log = RunStore().events_path.read_text()
    assert f"run {run.id}: its folder {run.path} was removed while it trained; the trainer stopped without saving" in log


def test_a_teams_umask_002_makes_every_file_and_folder_group_writable(tiny_model, tmp_path, runs_home):
    config = _demo_config(tmp_path, tiny_model)
    proc = subprocess.run(["bash", "-c", f"umask 002; {sys.executable} -m sft_tui.cli train {config} --set training.max_steps=4 "
                                         "--set training.save_steps=2 --follow"], capture_output=True, text=True, timeout=FINISH_S)
    assert proc.returncode == 0, proc.stderr
    run = RunStore().run_dirs()[0]
    assert wait_until_inactive(run, FINISH_S) == "completed"
    paths = [run.path, *run.path.rglob("*")]
    assert run.summary_path in paths and run.adapter_dir / "adapter_model.safetensors" in paths and run.checkpoints_dir in paths
    private = [f"{p.relative_to(run.path.parent)} {stat.filemode(p.stat().st_mode)}" for p in paths
               if (p.stat().st_mode & 0o060) != 0o060]
    assert private == []
    assert tiny_model.stat().st_mode & 0o050 == 0o050  # the cached demo model too (it was 0700)


def test_job_failures_get_advice_for_the_job_not_for_training(make_run, tmp_path, monkeypatch):
    import errno

    from sft_tui.trainer import failures

    run = make_run()
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "merged" / "model.safetensors"))
    error = failures.classify_failure(run, full, 0, "merge", tmp_path / "merged")
    assert error.kind == "disk" and "while the merge wrote under" in error.message and str(tmp_path / "merged") in error.message
    assert "start the merge again" in error.hint and "resume" not in error.hint and "save_total_limit" not in error.hint
    # torch's zip writer says "unexpected pos" instead of ENOSPC when optimizer.pt meets a full disk
    torn = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1002432 vs 1002324")
    monkeypatch.setattr(failures, "free_bytes", lambda _path: 4096)
    assert failures.classify_failure(run, torn, 20).kind == "disk"
    monkeypatch.setattr(failures, "free_bytes", lambda _path: 50 * 2**30)
    assert failures.classify_failure(run, torn, 20).kind == "crash"  # plenty of room: a real bug, with its traceback
