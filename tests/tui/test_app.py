"""The TUI under Pilot, with a store over a temp folder, a fake NVML and fake job starters: no terminal, no trainer, no clock.

Every poll is driven by the test (screen.poll(), then settle) or replaced by a posted
message; tests wait for workers and message queues, never for time to pass.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from sft_tui.core.runs.schema import EvalRow, JobError, JobOverview, JobStatus, TrainRow, now_iso
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import SystemSampler
from sft_tui.tui.app import SftApp
from sft_tui.tui.screens.confirm import ConfirmScreen
from sft_tui.tui.screens.home import HomeScreen
from sft_tui.tui.screens.monitor import MonitorScreen
from sft_tui.tui.widgets.loss_chart import LossChart
from tests.tui.conftest import NO_TIMERS, settle, until
from tests.unit.test_sysmon import FakeNvml


@pytest.fixture()
def store(tmp_path):
    store = RunStore(tmp_path / "home")
    now = datetime.now(timezone.utc)
    live = store.create_run('[model]\nname = "qwen2.5-0.5b"\n[method]\nname = "lora"\n', "qwen2.5-0.5b", "lora", name="live", now=now)
    live.write_status(JobStatus("running", 999_999, now_iso(), now_iso(), step=20, max_steps=100, eta_s=80.0))
    for step in range(1, 21):
        live.append_metric(TrainRow(step=step, loss=3.0 - step * 0.05, learning_rate=2e-4, grad_norm=1.0, tokens_per_s=900.0,
                                    gpu_mem_gib=3.1, gpu_reserved_gib=3.5))
    live.log_path.write_text("[sft-tui] training\n")
    old = (now - timedelta(minutes=10)).isoformat()
    dead = store.create_run('[model]\nname = "llama3.1-8b"\n[method]\nname = "qlora"\n', "llama3.1-8b", "qlora", name="dead", now=now - timedelta(hours=1))
    dead.write_status(JobStatus("running", 999_998, old, old, step=7, max_steps=300))
    return store


def no_launch(run):
    """The launcher of apps that should start nothing: the queue's admission would call it for a queued run that fits."""
    raise AssertionError(f"this test did not expect {run.id} to be started")


def make(store, **kwargs):
    calls = []
    kwargs.setdefault("launch_fn", no_launch)  # never the real launcher, also not from the app's queue admission
    app = SftApp(store, SystemSampler(FakeNvml()), stop_run=lambda run: calls.append(("stop", run.id)) or f"stopping {run.id}",
                 resume_run=lambda run: calls.append(("resume", run.id)) or f"resuming {run.id}", poll_s=NO_TIMERS, **kwargs)
    return app, calls


async def test_home_lists_runs_and_gpus(store):
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        home = app.screen
        assert isinstance(home, HomeScreen)
        assert [r.id for r in home.runs] == [r.id for r in store.run_dirs()]
        assert {r.state for r in home.runs} == {"running", "crashed"}
        strip = str(home.query_one("#gpu-strip").render())
        assert "NVIDIA A100-SXM4-80GB" in strip and "Tesla T4" in strip


async def test_monitor_updates_as_rows_are_appended_and_keys_work(store):
    app, calls = make(store)
    live = store.find_run("live")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("enter")  # the newest run (live) is first
        await settle(pilot)
        monitor = app.screen
        assert isinstance(monitor, MonitorScreen) and monitor.run.id == live.id
        chart = monitor.query_one(LossChart)
        assert len(chart.points()[0]) == 20
        for step in range(21, 31):
            live.append_metric(TrainRow(step=step, loss=1.0, tokens_per_s=950.0))
        live.append_metric(EvalRow(step=30, eval_loss=1.2))
        monitor.poll()  # what the screen's timer does every poll_s
        await settle(pilot)
        xs, _, exs, eys = chart.points()
        assert xs[-1] == 30 and exs == [30.0] and eys == [1.2]
        assert "running" in str(monitor.query_one("#run-title").render())
        await pilot.press("m", "l")
        assert chart.smoothing is False and chart.log_scale is True
        await pilot.press("o")
        await settle(pilot)
        assert "[sft-tui] training" in app.screen.query_one("#log-text").text
        await pilot.press("escape")
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen) and calls == []  # `s` alone never stops a run
        await pilot.press("x", "s", "n")  # stray keys do nothing; n (or esc) says no
        await settle(pilot)
        assert isinstance(app.screen, MonitorScreen) and calls == []
        await pilot.press("s", "y")
        await settle(pilot)
        assert calls == [("stop", live.id)]
        await pilot.press("r")  # not offered while the run is running
        await settle(pilot)
        assert calls == [("stop", live.id)]
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    assert live.read_status().state == "running"  # leaving the app never touches the run


async def test_opening_a_run_directly_and_seeing_its_error(store):
    app, _ = make(store, open_run="dead")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, MonitorScreen)
        assert "crashed" in str(app.screen.query_one("#run-title").render())


async def test_a_failed_run_shows_kind_message_and_hint(store):
    run = store.find_run("live")
    status = run.read_status()
    run.write_status(replace(status, state="failed", updated_at=now_iso(),
                             error=JobError("oom", "out of memory at step 20", "micro-batch 1 with gradient accumulation 4 fits")))
    app, _ = make(store, open_run="live")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        error = str(app.screen.query_one("#error").render())
        assert "oom" in error and "out of memory at step 20" in error and "gradient accumulation 4 fits" in error


def test_the_tui_never_imports_torch():
    import subprocess
    import sys

    code = "import sys\nimport sft_tui.tui.app\nprint(sorted(m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


async def test_the_estimator_recomputes_as_fields_change(store):
    from sft_tui.tui.screens.estimate import EstimateScreen

    app, _ = make(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, EstimateScreen)
        assert "qwen2.5-1.5b · lora · seq 2048" in screen.report and "GPU: NVIDIA A100-SXM4-80GB" in screen.report
        screen.query_one("#seq_len").value = "8192"
        screen.query_one("#gpu_gib").value = "4"
        # the form recomputes once typing pauses (a debounce timer): wait for the report to change, not for a time
        await until(pilot, lambda: "seq 8192" in screen.report and "4 GiB GPU" in screen.report, "the estimate to recompute")
        assert "does NOT fit" in screen.report and "to make it fit:" in screen.report
        screen.query_one("#objective").value = "dpo"  # chosen and rejected answers and a reference forward: more memory
        await until(pilot, lambda: "qwen2.5-1.5b · dpo · lora · seq 8192" in screen.report, "the DPO estimate")
        assert "rejected answers' activations" in screen.report and "reference forward" in screen.report
        screen.query_one("#model").value = "no-such-model"
        await until(pilot, lambda: "unknown model 'no-such-model'" in screen.report, "the estimate to recompute")
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)


async def test_compare_overlays_marked_runs_and_lists_differences(store):
    from sft_tui.tui.screens.compare import CompareScreen

    app, _ = make(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("c")  # nothing marked: a warning, no screen
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("space", "down", "space", "c")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen) and len(screen.runs) == 2
        live = store.find_run("live").id
        assert [len(xs) for run_id, xs, _ in screen.comparison.series if run_id == live] == [20]
        table = screen.query_one("#diff")
        fields = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert {"model.name", "method.name", "final loss"} <= set(fields)


async def test_the_wizard_asks_then_recommends_and_writes_files(store, tmp_path):
    from sft_tui.tui.screens.wizard import WizardScreen

    app, _ = make(store)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, WizardScreen)
        screen.folder = tmp_path
        answers = {"goal": "task", "labeled_examples": "800", "prompting_accuracy": "0.4", "model": "llama3.1-8b", "gpu_gib": "16"}
        for number, question in enumerate(screen.spec.questions):
            kind = "AnswerChoices" if question.kind in ("choice", "bool") else "AnswerInput"

            def asked(number=number, kind=kind):  # the question is on screen: its answer widget mounted, the old one gone
                found = screen.query("#value")
                return screen.index == number and len(found) == 1 and type(found.first()).__name__ == kind

            await until(pilot, asked, f"question {number + 1} ({question.key}) to be asked")
            widget = screen.query_one("#value")
            if question.key in answers:
                widget.value = answers[question.key]
            elif question.key == "labeled_examples":
                widget.value = "abc"
            await pilot.press("enter")  # the answer has the focus; a click could land where the button was before the layout moved it
            await settle(pilot)
        await until(pilot, lambda: screen.recommendation is not None, "the recommendation")
        assert (screen.recommendation.approach, screen.recommendation.method) == ("finetune", "qlora")
        assert "recommendation: finetune with qlora on llama3.1-8b" in str(screen.query_one("#result").render())
        await pilot.press("w", "o")
        await settle(pilot)
        assert (tmp_path / "decision.md").read_text().startswith("# Adaptation decision: finetune with qlora")
        assert 'recipe = "qlora"' in (tmp_path / "run.toml").read_text()
        from sft_tui.tui.screens.launch import LaunchScreen

        assert isinstance(app.screen, LaunchScreen) and app.screen.config == str(tmp_path / "run.toml")  # on to Launch


async def test_the_wizard_refuses_a_bad_answer_and_stays(store):

    app, _ = make(store)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("w")
        screen = app.screen
        await settle(pilot)
        while screen.spec.questions[screen.index].key != "labeled_examples":
            await pilot.click("#next")
            await settle(pilot)
        screen.query_one("#value").value = "lots"
        await pilot.click("#next")
        await settle(pilot)
        assert screen.spec.questions[screen.index].key == "labeled_examples" and "labeled_examples" not in screen.raw


async def test_launch_checks_then_launches_through_the_same_code_as_train(store, tmp_path):
    import json as _json

    from sft_tui.tui.screens.launch import LaunchScreen

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(_json.dumps(dict(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                         num_key_value_heads=2, intermediate_size=128, vocab_size=500)))
    (model / "model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")  # a valid header with no tensors
    (model / "tokenizer.json").write_text("{}")
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{nope\n")
    config = tmp_path / "run.toml"
    config.write_text(f'recipe = "lora"\n[model]\nname = "{model}"\n[data]\ntrain = "{data}"\n')
    launched = []
    app, _ = make(store, launch_fn=lambda run: launched.append(run.id) or 4242)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, LaunchScreen)
        screen.query_one("#config").value = str(config)
        screen.query_one("#overrides").value = f"data.train={bad}"
        await pilot.click("#check")
        await settle(pilot)
        assert any(f"{bad}:1: not valid JSON" in line for line in screen.output) and not launched
        screen.query_one("#overrides").value = "training.lr=1e-4, method.lora_r=8"
        await pilot.click("#launch")
        await settle(pilot)
        assert len(launched) == 1 and isinstance(app.screen, MonitorScreen)
    run = store.find_run(launched[0])
    assert "lr = 0.0001" in run.config_path.read_text() and "lora_r = 8" in run.config_path.read_text()


async def test_launch_writes_a_config_from_the_fields_when_there_is_none(store, tmp_path):
    from sft_tui.tui.screens.launch import LaunchScreen

    app, _ = make(store, launch_fn=lambda run: 1)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, LaunchScreen)
        config = tmp_path / "new" / "run.toml"
        screen.query_one("#config").value = str(config)
        screen.query_one("#model").value = "qwen2.5-0.5b"
        await pilot.click("#check")
        await settle(pilot)
        assert config.exists() and 'name = "qwen2.5-0.5b"' in config.read_text()
        # the data file named in the fields does not exist yet: pre-flight stops there, nothing launches
        assert any("dataset file not found" in line for line in screen.output), screen.output


async def test_the_data_screen_inspects_a_file_and_shows_bad_rows(store, tmp_path):

    from sft_tui.tui.messages import DataInspected, DataInspectFailed
    from sft_tui.tui.screens.data import DataScreen

    rows = [json.dumps({"instruction": f"task {i} about topic {i}", "output": f"answer {i} in words"}) for i in range(30)]
    rows.insert(4, '{"instruction": "broken"')
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(rows) + "\n")
    app, _ = make(store)
    seen = []
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await settle(pilot)
        await pilot.press("d")
        screen = app.screen
        assert isinstance(screen, DataScreen)
        screen.query_one("#data-path").value = str(data)
        await pilot.press("enter")  # the path input has focus: Enter inspects
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert any(isinstance(m, DataInspected) for m in seen)
        assert screen.report.records == 30 and screen.report.invalid == 1
        assert f"{data}:5: not valid JSON" in str(screen.query_one("#data-details").render())
        assert len(screen.rows) == 8 and "30 usable rows" in str(screen.query_one("#data-summary").render())
        assert "exact duplicates" in app.export_screenshot().replace("&#160;", " ")
        screen.query_one("#data-path").value = str(tmp_path / "missing.jsonl")
        await pilot.click("#data-inspect")
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert any(isinstance(m, DataInspectFailed) for m in seen) and screen.report is None
        assert "dataset file not found" in str(screen.query_one("#data-summary").render())
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)


class FakeChat:
    """A chat backend that answers from a table: no model, no process."""

    def __init__(self):
        self.requests = []
        self.closed = False

    def start(self):
        return "fake model"

    def reply(self, messages, which):
        self.requests.append((which, [dict(m) for m in messages]))
        yield from (f"{which}-" if which == "base" else "", "{", '"a": 1', "}")

    def close(self):
        self.closed = True


def finished(store):
    """The 'live' run, made into a completed run with a saved adapter and an eval report."""
    run = store.find_run("live")
    run.write_status(JobStatus("completed", 999_999, now_iso(), now_iso(), step=100, max_steps=100))
    run.adapter_dir.mkdir()
    (run.adapter_dir / "adapter_config.json").write_text("{}")
    run.eval_dir.mkdir()
    run.eval_report_path.write_text(json.dumps({"checks": ["json_valid"], "base": {"response_loss": 3.0, "json_valid": 0.0},
                                                "tuned": {"response_loss": 1.0, "json_valid": 1.0}}))
    return run


async def test_chat_streams_answers_and_switches_to_the_base_for_the_same_prompt(store):
    from sft_tui.tui.messages import ChatAnswered
    from sft_tui.tui.screens.chat import ChatScreen

    finished(store)
    fake = FakeChat()
    app, _ = make(store, chat_backend=lambda run: fake, chat_run="live")
    seen = []
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChatScreen) and screen.ready
        await pilot.press(*"hi", "enter")
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert screen.history == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": '{"a": 1}'}]
        await pilot.press("ctrl+t", "ctrl+r")
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert [r[0] for r in fake.requests] == ["tuned", "base"]
        assert fake.requests[1][1] == [{"role": "user", "content": "hi"}]  # the same prompt, without the tuned answer
        assert screen.history[-1] == {"role": "assistant", "content": 'base-{"a": 1}'}
        assert len({id(m) for m in seen if isinstance(m, ChatAnswered)}) == 2  # the hook sees a bubbling message twice
        text = " ".join(str(w.render()) for w in screen.query("#chat-log Static"))
        assert "tuned" in text and 'base-{"a": 1}' in text
        await pilot.press("escape")
        await settle(pilot)
    assert fake.closed


async def test_chat_refuses_a_run_without_a_model(store):
    app, _ = make(store, chat_backend=lambda run: FakeChat(), chat_run="dead")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)


class FakeJobs:
    """start_job that records the request and makes a job folder with a queued status, as the real one does (no process)."""

    def __init__(self):
        self.requests = []

    def __call__(self, run, request):
        self.requests.append(request)
        job = run.job(f"{request.kind}-{sum(r.kind == request.kind for r in self.requests)}")
        job.path.mkdir(parents=True)
        job.write_request(request)
        job.write_status(JobStatus("queued", 0, now_iso(), now_iso(), kind=request.kind, owner=request.owner))
        return job


async def test_a_finished_runs_monitor_starts_eval_and_merge_jobs_and_offers_chat(store):
    run = finished(store)
    jobs = FakeJobs()
    app, _ = make(store, start_job=jobs, chat_backend=lambda r: FakeChat())
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.open_monitor(run.id)
        await settle(pilot)
        assert isinstance(app.screen, MonitorScreen)
        await pilot.press("v", "x")
        await settle(pilot)
        assert [(r.kind, r.output) for r in jobs.requests] == [("eval", ""), ("merge", str(run.merged_dir))]
        assert all(r.owner for r in jobs.requests)  # who asked, for a team on one box
        lines = str(app.screen.query_one("#jobs").render())
        assert "eval-1 queued" in lines and "merge-1 queued" in lines
        await pilot.press("t")
        await settle(pilot)
        from sft_tui.tui.screens.chat import ChatScreen

        assert isinstance(app.screen, ChatScreen)


async def test_merge_into_a_non_empty_merged_folder_is_refused_with_the_fix(store):
    run = finished(store)
    run.merged_dir.mkdir()
    (run.merged_dir / "config.json").write_text("{}")
    jobs = FakeJobs()
    app, _ = make(store, start_job=jobs)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.open_monitor(run.id)
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert jobs.requests == []
        assert any("output folder is not empty" in n.message for n in app._notifications)


async def test_the_monitor_shows_a_jobs_progress_and_its_result_when_it_ends(store):
    """Snapshots posted as messages, as the watcher would: the job line follows them and the end is announced."""
    from sft_tui.core.runs.watch import RunSnapshot
    from sft_tui.tui.messages import RunWatched

    run = finished(store)
    app, _ = make(store)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.open_monitor(run.id)
        await settle(pilot)
        monitor = app.screen
        base = monitor.snapshot
        running = JobOverview("eval-1", "eval", "running", "tuned: generating 20 answers", 30, 44)
        monitor.post_message(RunWatched(replace(base, jobs=(running,))))
        await settle(pilot)
        assert "eval-1 running: tuned: generating 20 answers 30/44" in str(monitor.query_one("#jobs").render())
        done = replace(running, state="completed", phase="", result="response loss 3.000 -> 1.000 (base -> tuned, 20 examples)")
        monitor.post_message(RunWatched(replace(base, jobs=(done,))))
        await settle(pilot)
        assert "eval-1 completed: response loss 3.000 -> 1.000" in str(monitor.query_one("#jobs").render())
        failed = JobOverview("merge-1", "merge", "failed", error=JobError("disk", "no space left on the device", "free disk space"))
        monitor.post_message(RunWatched(replace(base, jobs=(done, replace(failed, state="running")))))
        await settle(pilot)
        monitor.post_message(RunWatched(replace(base, jobs=(done, failed))))
        await settle(pilot)
        assert "merge-1 failed (disk): no space left on the device" in str(monitor.query_one("#jobs").render())
        assert isinstance(base, RunSnapshot)


async def test_a_running_runs_monitor_does_not_offer_eval(store):
    jobs = FakeJobs()
    app, _ = make(store, start_job=jobs)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.open_monitor("live")
        await settle(pilot)
        await pilot.press("v", "x")
        await settle(pilot)
        assert jobs.requests == []


async def test_a_failing_worker_is_shown_not_silent(store):
    app, _ = make(store)
    app.store.list_runs = lambda: (_ for _ in ()).throw(PermissionError(13, "Permission denied", str(store.runs_dir)))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert any("listing the runs failed: PermissionError" in n.message and n.severity == "error" for n in app._notifications)


async def test_home_keeps_listing_when_one_runs_status_is_broken(store):
    broken = store.find_run("dead")
    broken.status_path.write_text(broken.status_path.read_text().replace('"updated_at": "', '"updated_at": "yesterday'))
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        home = app.screen
        assert {r.id: r.state for r in home.runs}[broken.id] == "unknown" and len(home.runs) == 2
        assert "not an ISO-8601 time" in str(home.query_one("#empty").render())


async def test_home_updates_cells_in_place_so_the_cursor_stays(store):
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        home = app.screen
        await pilot.press("down")
        live = store.find_run("live")
        live.append_metric(TrainRow(step=21, loss=0.5))
        home.poll()
        await settle(pilot)
        table = home.query_one("#runs")
        assert table.cursor_row == 1 and "0.5000" in [str(c) for c in table.get_row(live.id)]


async def test_compare_shows_eval_results(store):
    from textual.widgets import DataTable

    from sft_tui.tui.screens.compare import CompareScreen

    run = finished(store)
    app, _ = make(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.push_screen(CompareScreen([run, store.find_run("dead")]))
        await settle(pilot)
        table = app.screen.query_one("#diff", DataTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert ["eval: response loss (held-out answers)", "3.000 -> 1.000", "-"] in [list(map(str, r)) for r in rows]
        assert ["eval: valid JSON", "0% -> 100%", "-"] in [list(map(str, r)) for r in rows]


async def test_home_keeps_the_cursor_on_its_run_when_a_new_run_appears_above(store):
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        home = app.screen
        await pilot.press("down")
        dead = store.find_run("dead").id
        assert home._selected() == dead
        store.create_run('[model]\nname = "qwen2.5-0.5b"\n[method]\nname = "lora"\n', "qwen2.5-0.5b", "lora", name="newer")
        home.poll()
        await settle(pilot)
        assert len(home.runs) == 3 and home._selected() == dead  # `s` or enter still acts on the run the person chose


async def test_home_widens_a_column_when_a_value_grows(store):
    app, _ = make(store)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        home = app.screen
        live = store.find_run("live")
        live.write_status(replace(live.read_status(), step=1142, max_steps=3000, updated_at=now_iso()))
        home.poll()
        await settle(pilot)
        table = home.query_one("#runs")
        assert "1142/3000" in str(table.get_cell(live.id, "progress"))
        assert table.columns["progress"].content_width >= len("████ 1142/3000")


async def test_a_poll_that_keeps_failing_is_shown_once(store):
    run = store.find_run("live")
    run.metrics_path.unlink()
    run.metrics_path.mkdir()  # unreadable as a file: the watcher says so in the monitor instead of failing
    app, _ = make(store, open_run="live")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        monitor = app.screen
        assert "metrics.jsonl: Is a directory" in str(monitor.query_one("#error").render())
        monitor.watcher.poll = lambda: (_ for _ in ()).throw(RuntimeError("disk went away"))
        for _ in range(3):
            monitor.poll()
            await settle(pilot)
        assert [n.message for n in app._notifications].count("watching the run failed: RuntimeError: disk went away") == 1


async def test_home_draws_whole_cells_even_when_a_frame_came_before_the_columns_were_measured(store, monkeypatch):
    """Textual's DataTable widens columns for new rows when idle; a frame drawn before that must not stay on screen."""
    fill = HomeScreen._fill_table

    def fill_then_draw(self, old, new):
        fill(self, old, new)
        self.query_one("#runs").render_line(1)  # a screen update between the rows arriving and the idle pass (seen under load)

    monkeypatch.setattr(HomeScreen, "_fill_table", fill_then_draw)
    app, _ = make(store)
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(pilot)
        assert store.find_run("live").id in app.export_screenshot().replace("&#160;", " ")


def complete(run, loss: float = 0.42) -> None:
    """What the trainer leaves when it ends well."""
    run.append_metric(TrainRow(step=100, loss=loss))
    run.write_status(replace(run.read_status(), state="completed", step=100, updated_at=now_iso(), eta_s=None))


async def test_a_run_completing_while_home_is_open_is_announced_with_a_toast_an_event_and_the_bell(store, monkeypatch):
    app, _ = make(store)
    rings = []
    monkeypatch.setattr(app, "bell", lambda: rings.append(1))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        home = app.screen
        assert app._notifications == [] or all("completed" not in n.message for n in app._notifications)
        assert not home.query_one("#events").display  # nothing has happened yet: no empty line at 80x24
        complete(store.find_run("live"))
        home.poll()
        await settle(pilot)
        assert rings == [1]
        assert any(n.message == "live completed at step 100: loss 0.420" and n.severity == "information" for n in app._notifications)
        events = home.query_one("#events")
        assert events.display and "live completed at step 100" in str(events.render())
        home.poll()  # the next listing is not news again
        await settle(pilot)
        assert rings == [1]


async def test_an_oom_and_a_job_ending_are_announced_on_any_screen(store, monkeypatch):
    app, _ = make(store)
    rings = []
    monkeypatch.setattr(app, "bell", lambda: rings.append(1))
    live = store.find_run("live")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_monitor("dead")  # watching another run: the announcement still comes
        await settle(pilot)
        live.write_status(replace(live.read_status(), state="failed", updated_at=now_iso(),
                                  error=JobError("oom", "out of memory at step 20", "micro_batch_size 2 fits")))
        app.poll_runs()
        await settle(pilot)
        assert any(n.message.startswith("live ran out of GPU memory at step 20: micro_batch_size 2 fits") and n.severity == "error"
                   for n in app._notifications)
        job = live.job("merge-1")
        job.path.mkdir(parents=True)
        job.write_status(JobStatus("running", 999_999, now_iso(), now_iso(), kind="merge"))
        app.poll_runs()
        await settle(pilot)
        job.write_status(JobStatus("failed", 999_999, now_iso(), now_iso(), kind="merge", error=JobError("disk", "no space left", "free space")))
        app.poll_runs()
        await settle(pilot)
        assert any(n.message == "live merge-1 failed: no space left" for n in app._notifications) and rings == [1, 1]


async def test_desktop_notifications_are_off_unless_set_and_wrap_for_tmux(monkeypatch):
    from sft_tui.core.errors import UserError
    from sft_tui.tui.desktop_notify import desktop_notify_mode, desktop_sequence

    assert desktop_notify_mode("") == "off" and desktop_notify_mode("OSC9") == "osc9"
    with pytest.raises(UserError, match="SFT_TUI_DESKTOP_NOTIFY='bell' is not a notification mode"):
        desktop_notify_mode("bell")
    assert desktop_sequence("off", "sft-tui", "done") == ""
    assert desktop_sequence("osc9", "sft-tui", "live completed\x07!") == "\x1b]9;live completed !\x07"
    assert desktop_sequence("osc777", "a;b", "done") == "\x1b]777;notify;a,b;done\x07"
    assert desktop_sequence("osc9", "t", "x", inside_tmux=True) == "\x1bPtmux;\x1b\x1b]9;x\x07\x1b\\"


async def test_the_key_overlay_lists_every_key_of_the_screen_in_front(store):
    from sft_tui.tui.screens.keys import KeysScreen

    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
        listed = str(app.screen.query_one("#keys-list").render())
        for shown in ("Open", "New run", "Mark for compare", "Compare marked runs", "Data", "Quit"):
            assert shown in listed  # also the keys the footer has no room for
        await pilot.press("escape")
        await pilot.press("enter")  # open the live run's monitor
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        listed = str(app.screen.query_one("#keys-list").render())
        assert "Stop" in listed and "Chart" in listed and "Smoothing" in listed and "Resume" not in listed  # what applies now


def test_no_screen_binds_a_key_tmux_or_screen_takes():
    import importlib
    import pkgutil

    import sft_tui.tui.screens as screens
    from textual.screen import Screen

    for info in pkgutil.iter_modules(screens.__path__):
        module = importlib.import_module(f"sft_tui.tui.screens.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Screen):
                for binding in getattr(value, "BINDINGS", []):
                    keys = binding.key if hasattr(binding, "key") else binding[0]
                    assert not {"ctrl+b", "ctrl+a"} & set(keys.split(",")), f"{value.__name__} binds {keys}"


async def test_resume_is_offered_for_a_crashed_run_and_stop_is_not(store):
    app, calls = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("down")  # the crashed run
        await pilot.press("s")
        await settle(pilot)
        assert calls == [] and isinstance(app.screen, HomeScreen)
        await pilot.press("r")
        await settle(pilot)
        assert calls == [("resume", store.find_run("dead").id)]


async def test_a_second_stop_asks_to_kill_and_says_so(store):
    app, calls = make(store)
    live = store.find_run("live")
    live.stop_request_path.write_text("earlier")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen) and "Kill run" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("y")
        await settle(pilot)
        assert calls == [("stop", live.id)]


async def test_home_shows_whole_cells_when_the_wide_columns_replace_the_narrow_ones(store):
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#runs")
        assert [k.value for k in table.columns] == ["name", "owner", "state", "progress", "loss", "tok/s", "ETA"]  # what 80 columns are for
        await pilot.resize_terminal(130, 30)
        await settle(pilot)
        assert [k.value for k in table.columns][-3:] == ["model", "method", "started"]
        first = table.render_line(1).text
        assert "live" in first and "running" in first and "qwen2.5-0.5b" in first, first
    app, _ = make(store)
    async with app.run_test(size=(130, 30)) as pilot:  # wide from the first frame: cells were cut to their headers' width
        await settle(pilot)
        first = app.screen.query_one("#runs").render_line(1).text
        assert "running" in first and "qwen2.5-0.5b" in first, first


async def test_the_monitor_opens_the_eval_report_and_a_jobs_log_only_when_there_is_one(store):
    from sft_tui.tui.screens.log_viewer import LogViewerScreen
    from sft_tui.tui.screens.report import EvalReportScreen

    run = finished(store)
    app, _ = make(store, open_run=run.id)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("p", "j")  # no report.md and no job yet: neither key is offered
        await settle(pilot)
        assert isinstance(app.screen, MonitorScreen)
        run.eval_markdown_path.write_text("# Evaluation\n\n| metric | base | tuned |\n| --- | --- | --- |\n| valid JSON | 0% | 100% |\n")
        job = run.job("eval-1")
        job.path.mkdir(parents=True)
        job.write_status(JobStatus("completed", 999_999, now_iso(), now_iso(), kind="eval"))
        job.log_path.write_text("[sft-tui] eval: 40 examples\n")
        app.screen.poll()
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, EvalReportScreen)
        await pilot.press("escape")
        await pilot.press("j")
        await settle(pilot)
        assert isinstance(app.screen, LogViewerScreen) and app.screen.path == job.log_path


def test_axis_ticks_read_as_numbers_people_use():
    from sft_tui.tui.widgets.series import tick_labels, whole_ticks

    assert whole_ticks(1, 298) == [1, 75, 150, 224, 298]  # whole steps, never 74.8
    assert tick_labels([0, 2.45, 4.9, 12834.0, 0.00015]) == ["0", "2.5", "4.9", "12,834", "1.5e-04"]
