"""The TUI under Pilot, with a store over a temp folder and a fake NVML: no terminal, no trainer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from sft_tui.core.runs import RunStatus, RunStore, now_iso
from sft_tui.core.sysmon import SystemSampler
from sft_tui.tui.app import SftApp
from sft_tui.tui.screens.home import HomeScreen
from sft_tui.tui.screens.monitor import MonitorScreen
from sft_tui.tui.widgets.loss_chart import LossChart
from tests.unit.test_sysmon import FakeNvml


@pytest.fixture()
def store(tmp_path):
    store = RunStore(tmp_path / "home")
    now = datetime.now(timezone.utc)
    live = store.create_run('[model]\nname = "qwen2.5-0.5b"\n[method]\nname = "lora"\n', "qwen2.5-0.5b", "lora", name="live", now=now)
    live.write_status(RunStatus("running", 999_999, now_iso(), now_iso(), 20, 100, eta_s=80.0))
    with live.metrics_writer() as writer:
        for step in range(1, 21):
            writer.append({"step": step, "loss": 3.0 - step * 0.05, "learning_rate": 2e-4, "grad_norm": 1.0, "tokens_per_s": 900.0,
                           "gpu_mem_gib": 3.1, "gpu_reserved_gib": 3.5, "time": 0})
    live.log_path.write_text("[sft-tui] training\n")
    old = (now - timedelta(minutes=10)).isoformat()
    dead = store.create_run('[model]\nname = "llama3.1-8b"\n[method]\nname = "qlora"\n', "llama3.1-8b", "qlora", name="dead", now=now - timedelta(hours=1))
    dead.write_status(RunStatus("running", 999_998, old, old, 7, 300))
    return store


def make(store, **kwargs):
    calls = []
    app = SftApp(store, SystemSampler(FakeNvml()), stop_run=lambda run: calls.append(("stop", run.id)) or f"stopping {run.id}",
                 resume_run=lambda run: calls.append(("resume", run.id)) or f"resuming {run.id}", poll_s=0.2, **kwargs)
    return app, calls


async def test_home_lists_runs_and_gpus(store):
    app, _ = make(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
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
        await pilot.pause(0.5)
        await pilot.press("enter")  # the newest run (live) is first
        await pilot.pause(0.5)
        monitor = app.screen
        assert isinstance(monitor, MonitorScreen) and monitor.run.id == live.id
        chart = monitor.query_one(LossChart)
        assert len(chart.points()[0]) == 20
        with live.metrics_writer() as writer:
            for step in range(21, 31):
                writer.append({"step": step, "loss": 1.0, "tokens_per_s": 950.0, "time": 0})
            writer.append({"step": 30, "eval_loss": 1.2, "time": 0})
        await pilot.pause(0.8)
        xs, _, exs, eys = chart.points()
        assert xs[-1] == 30 and exs == [30.0] and eys == [1.2]
        assert "running" in str(monitor.query_one("#run-title").render())
        await pilot.press("m", "l")
        assert chart.smoothing is False and chart.log_scale is True
        await pilot.press("o")
        await pilot.pause(0.2)
        assert "[sft-tui] training" in "\n".join(app.screen.query_one("#full-log").lines)
        await pilot.press("escape")
        await pilot.press("s")
        await pilot.press("r")
        assert calls == [("stop", live.id), ("resume", live.id)]
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert isinstance(app.screen, HomeScreen)
    assert live.read_status().state == "running"  # leaving the app never touches the run


async def test_opening_a_run_directly_and_seeing_its_error(store):
    app, _ = make(store, open_run="dead")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.6)
        assert isinstance(app.screen, MonitorScreen)
        assert "crashed" in str(app.screen.query_one("#run-title").render())


async def test_a_failed_run_shows_kind_message_and_hint(store):
    from sft_tui.core.runs import RunError

    run = store.find_run("live")
    status = run.read_status()
    run.write_status(RunStatus("failed", status.pid, status.started_at, now_iso(), 20, 100,
                               RunError("oom", "out of memory at step 20", "micro-batch 1 with gradient accumulation 4 fits")))
    app, _ = make(store, open_run="live")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.6)
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
        await pilot.pause(0.3)
        await pilot.press("e")
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, EstimateScreen)
        assert "qwen2.5-1.5b · lora · seq 2048" in screen.report and "GPU: NVIDIA A100-SXM4-80GB" in screen.report
        screen.query_one("#seq_len").value = "8192"
        screen.query_one("#gpu_gib").value = "8"
        await pilot.pause(0.5)
        assert "seq 8192" in screen.report and "does NOT fit" in screen.report and "to make it fit:" in screen.report
        screen.query_one("#model").value = "no-such-model"
        await pilot.pause(0.5)
        assert "unknown model 'no-such-model'" in screen.report
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)


async def test_compare_overlays_marked_runs_and_lists_differences(store):
    from sft_tui.tui.screens.compare import CompareScreen

    app, _ = make(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.4)
        await pilot.press("c")  # nothing marked: a warning, no screen
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("space", "down", "space", "c")
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, CompareScreen) and len(screen.runs) == 2
        live = store.find_run("live").id
        assert len(screen.series[live][0]) == 20
        table = screen.query_one("#diff")
        fields = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert {"model.name", "method.name", "final loss"} <= set(fields)


async def test_the_wizard_asks_then_recommends_and_writes_files(store, tmp_path):
    from sft_tui.tui.screens.wizard import WizardScreen

    app, _ = make(store)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("w")
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, WizardScreen)
        screen.folder = tmp_path
        answers = {"goal": "task", "labeled_examples": "800", "prompting_accuracy": "0.4", "model": "llama3.1-8b", "gpu_gib": "16"}
        for question in screen.spec.questions:
            widget = screen.query_one("#value")
            if question.key in answers:
                widget.value = answers[question.key]
            elif question.key == "labeled_examples":
                widget.value = "abc"
            await pilot.click("#next")
            await pilot.pause(0.05)
        assert screen.recommendation is not None
        assert (screen.recommendation.approach, screen.recommendation.method) == ("finetune", "qlora")
        assert "recommendation: finetune with qlora on llama3.1-8b" in str(screen.query_one("#result").render())
        await pilot.press("w", "o")
        await pilot.pause(0.2)
        assert (tmp_path / "decision.md").read_text().startswith("# Adaptation decision: finetune with qlora")
        assert 'recipe = "qlora"' in (tmp_path / "run.toml").read_text()
        from sft_tui.tui.screens.launch import LaunchScreen

        assert isinstance(app.screen, LaunchScreen) and app.screen.config == str(tmp_path / "run.toml")  # on to Launch


async def test_the_wizard_refuses_a_bad_answer_and_stays(store):

    app, _ = make(store)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("w")
        screen = app.screen
        await pilot.pause(0.2)
        while screen.spec.questions[screen.index].key != "labeled_examples":
            await pilot.click("#next")
            await pilot.pause(0.05)
        screen.query_one("#value").value = "lots"
        await pilot.click("#next")
        await pilot.pause(0.05)
        assert screen.spec.questions[screen.index].key == "labeled_examples" and "labeled_examples" not in screen.raw


async def test_launch_checks_then_launches_through_the_same_code_as_train(store, tmp_path):
    import json as _json

    from sft_tui.tui.screens.launch import LaunchScreen

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(_json.dumps(dict(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                         num_key_value_heads=2, intermediate_size=128, vocab_size=500)))
    (model / "model.safetensors").write_bytes(b"")
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
        await pilot.pause(0.3)
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, LaunchScreen)
        screen.query_one("#config").value = str(config)
        screen.query_one("#overrides").value = f"data.train={bad}"
        await pilot.click("#check")
        await pilot.pause(1.0)
        assert any(f"{bad}:1: not valid JSON" in line for line in screen.output) and not launched
        screen.query_one("#overrides").value = "training.lr=1e-4, method.lora_r=8"
        await pilot.click("#launch")
        await pilot.pause(1.5)
        assert len(launched) == 1 and isinstance(app.screen, MonitorScreen)
    run = store.find_run(launched[0])
    assert "lr = 0.0001" in run.config_path.read_text() and "lora_r = 8" in run.config_path.read_text()


async def test_launch_writes_a_config_from_the_fields_when_there_is_none(store, tmp_path):
    from sft_tui.tui.screens.launch import LaunchScreen

    app, _ = make(store, launch_fn=lambda run: 1)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, LaunchScreen)
        config = tmp_path / "new" / "run.toml"
        screen.query_one("#config").value = str(config)
        screen.query_one("#model").value = "qwen2.5-0.5b"
        await pilot.click("#check")
        await pilot.pause(1.0)
        assert config.exists() and 'name = "qwen2.5-0.5b"' in config.read_text()
        # the data file named in the fields does not exist yet: pre-flight stops there, nothing launches
        assert any("dataset file not found" in line for line in screen.output), screen.output


async def test_the_data_screen_inspects_a_file_and_shows_bad_rows(store, tmp_path):
    from textual.widgets import DataTable

    from sft_tui.tui.messages import DataInspected, DataInspectFailed
    from sft_tui.tui.screens.data import DataScreen

    rows = [json.dumps({"instruction": f"task {i} about topic {i}", "output": f"answer {i} in words"}) for i in range(30)]
    rows.insert(4, '{"instruction": "broken"')
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(rows) + "\n")
    app, _ = make(store)
    seen = []
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await pilot.pause(0.3)
        await pilot.press("d")
        screen = app.screen
        assert isinstance(screen, DataScreen)
        screen.query_one("#data-path").value = str(data)
        await pilot.press("enter")  # the path input has focus: Enter inspects
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        assert any(isinstance(m, DataInspected) for m in seen)
        assert screen.report.records == 30 and screen.report.invalid == 1
        assert f"{data}:5: not valid JSON" in str(screen.query_one("#data-details").render())
        table = screen.query_one("#data-table", DataTable)
        assert table.row_count == 8 and "30 usable rows" in str(screen.query_one("#data-summary").render())
        screen.query_one("#data-path").value = str(tmp_path / "missing.jsonl")
        await pilot.click("#data-inspect")
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
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
    run.write_status(RunStatus("completed", 999_999, now_iso(), now_iso(), 100, 100))
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
        await pilot.pause(0.5)
        screen = app.screen
        assert isinstance(screen, ChatScreen) and screen.ready
        await pilot.press(*"hi", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        assert screen.history == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": '{"a": 1}'}]
        await pilot.press("ctrl+b", "ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        assert [r[0] for r in fake.requests] == ["tuned", "base"]
        assert fake.requests[1][1] == [{"role": "user", "content": "hi"}]  # the same prompt, without the tuned answer
        assert screen.history[-1] == {"role": "assistant", "content": 'base-{"a": 1}'}
        assert len({id(m) for m in seen if isinstance(m, ChatAnswered)}) == 2  # the hook sees a bubbling message twice
        text = " ".join(str(w.render()) for w in screen.query("#chat-log Static"))
        assert "tuned" in text and 'base-{"a": 1}' in text
        await pilot.press("escape")
        await pilot.pause(0.2)
    assert fake.closed


async def test_chat_refuses_a_run_without_a_model(store):
    app, _ = make(store, chat_backend=lambda run: FakeChat(), chat_run="dead")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        assert isinstance(app.screen, HomeScreen)


async def test_a_finished_runs_monitor_offers_eval_chat_and_merge(store):
    run = finished(store)
    calls = []
    app, _ = make(store, after_fn=lambda r, command: calls.append(command) or (0, "ok"), chat_backend=lambda r: FakeChat())
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause(0.3)
        app.open_monitor(run.id)
        await pilot.pause(0.5)
        assert isinstance(app.screen, MonitorScreen)
        await pilot.press("v")
        await app.workers.wait_for_complete()
        await pilot.press("x")
        await app.workers.wait_for_complete()
        assert calls == [["eval", run.id], ["merge", run.id, "-o", str(run.path / "merged")]]
        await pilot.press("t")
        await pilot.pause(0.3)
        from sft_tui.tui.screens.chat import ChatScreen

        assert isinstance(app.screen, ChatScreen)


async def test_a_running_runs_monitor_does_not_offer_eval(store):
    calls = []
    app, _ = make(store, after_fn=lambda r, command: calls.append(command) or (0, "ok"))
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause(0.3)
        app.open_monitor("live")
        await pilot.pause(0.5)
        await pilot.press("v", "x")
        await pilot.pause(0.2)
        assert calls == []


async def test_compare_shows_eval_results(store):
    from textual.widgets import DataTable

    from sft_tui.tui.screens.compare import CompareScreen

    run = finished(store)
    app, _ = make(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        app.push_screen(CompareScreen([run, store.find_run("dead")]))
        await pilot.pause(0.5)
        table = app.screen.query_one("#diff", DataTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert ["eval: response loss (held-out answers)", "3.000 -> 1.000", "-"] in [list(map(str, r)) for r in rows]
        assert ["eval: valid JSON", "0% -> 100%", "-"] in [list(map(str, r)) for r in rows]
