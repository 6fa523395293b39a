"""The log viewer (follow, search, wrap, filter, a missing file) and the eval report screen, driven with Pilot.

The viewer's reads are driven by the test (`screen.read_more()`, then settle): the app's timers
are an hour apart (NO_TIMERS). Snapshots use paths relative to a temp working folder so the
title line is the same on every machine. Update after an intended change:
`python -m pytest tests/tui/test_log_and_report.py --snapshot-update`, then look at the SVGs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Markdown, Static

from sft_tui.core.evaluate.report import render_markdown
from sft_tui.core.runs.rundir import RunDir
from sft_tui.core.runs.store import RunStore
from sft_tui.core.runs.sysmon import SystemSampler
from sft_tui.tui.app import SftApp
from sft_tui.tui.screens.log_viewer import LogText, LogViewerScreen
from sft_tui.tui.screens.report import EvalReportScreen
from tests.tui.conftest import NO_TIMERS, settle
from tests.unit.test_sysmon import FakeNvml

LOG = """\
Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'. Please make sure you already `pip install kernels` and the kernels >= 0.11.1
[sft-tui] run 20261122-093000-json-lora: lora on /models/qwen2.5-1.5b (cuda, bf16)
[sft-tui] data: alpaca, 4,800 training rows, 200 eval rows, 0 skipped (empty responses), 3 longer than 1024 tokens (truncated)
Map: 100%|██████████| 4800/4800 [00:01<00:00, 4102.11 examples/s]
step   1/300  loss 2.998  lr 0  grad 3.78  3,199 tok/s  ETA 8:08
step  10/300  loss 2.559  lr 1.0e-04  grad 1.03  4,154 tok/s  ETA 3:47
{'loss': '2.03', 'grad_norm': '0.6043', 'learning_rate': '0.0002', 'epoch': '0.3', 'train_tokens_per_second': '4102'}
 10%|#         | 1/10 [00:01<00:09, 1.0it/s]\r 20%|##        | 2/10 [00:02<00:08, 1.0it/s]
step  30/300  loss 1.553  lr 2.0e-04  grad 0.87  4,194 tok/s  ETA 3:15
eval @30  loss 1.612

step  40/300  loss 1.289  lr 2.0e-04  grad 0.26  4,156 tok/s  ETA 3:02
"""

REPORT = {
    "run": "20261122-093000-json-lora", "created_at": "2026-11-22T09:30:00+00:00", "data": "the run's eval split", "examples": 40,
    "device": "cuda, bf16", "checks": ["json_valid"], "decoding": {"greedy": True, "max_new_tokens": 64},
    "base": {"response_loss": 3.062, "response_ppl": 21.37, "json_valid": 0.0, "stopped_share": 0.0, "mean_answer_tokens": 46.0},
    "tuned": {"response_loss": 1.044, "response_ppl": 2.84, "json_valid": 1.0, "stopped_share": 1.0, "mean_answer_tokens": 15.8},
    "samples": [{"where": "eval.jsonl:1", "prompt": "Turn these key=value lines into one JSON object.\n\nactive=true\ncity=Bern",
                 "reference": '{"active": true, "city": "Bern"}', "base": "lang=es\nlang=es\nlang=", "tuned": '{"active": true, "city": "Bern"}',
                 "base_stopped": False, "tuned_stopped": True}],
}


class QuietSampler(SystemSampler):
    """The fake NVML: no real GPU is read under a screen that does not show GPUs."""

    def __init__(self):
        super().__init__(FakeNvml(), clock=lambda: 0.0)


@pytest.fixture()
def here(tmp_path, monkeypatch) -> Path:
    """A temp working folder: paths in titles are relative, so snapshots match anywhere."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_app(tmp_path: Path) -> SftApp:
    return SftApp(RunStore(tmp_path / "home"), QuietSampler(), poll_s=NO_TIMERS)


def opener(screen_factory):
    """run_before for a snapshot: open the screen on top of home, let its first read land."""
    async def run_before(pilot):
        await settle(pilot)
        await pilot.app.push_screen(screen_factory())
        await settle(pilot)
    return run_before


async def open_viewer(pilot, path: Path, title: str = "train.log") -> LogViewerScreen:
    await settle(pilot)
    screen = LogViewerScreen(path, title)
    await pilot.app.push_screen(screen)
    await settle(pilot)
    return screen


def shown_text(widget) -> str:
    """The text of every Static under `widget` (markdown blocks and table cells are Statics)."""
    return "\n".join(str(w.content) for w in widget.query(Static))


def status(screen) -> str:
    return str(screen.query_one("#log-status", Static).content)


# --- the log viewer ---

async def test_search_finds_a_word_selects_it_and_scrolls_it_into_view(here):
    log = here / "train.log"
    log.write_text("".join(f"step {i}  loss 1.0\n" for i in range(300)).replace("step 40  loss", "step 40  needle loss")
                   .replace("step 200  loss", "step 200  Needle loss"))
    async with make_app(here).run_test(size=(80, 24)) as pilot:
        screen = await open_viewer(pilot, log)
        area = screen.query_one(LogText)
        await pilot.press("slash", *"needle", "enter")
        await settle(pilot)
        assert area.selected_text == "Needle" and area.cursor_location[0] == 200  # following: the latest match, above
        assert area.scroll_y <= 200 < area.scroll_y + area.scrollable_content_region.height  # on screen
        assert "match 2/2" in status(screen)
        await pilot.press("n")  # wraps around to the first
        assert area.selected_text == "needle" and area.cursor_location[0] == 40
        assert area.scroll_y <= 40 < area.scroll_y + area.scrollable_content_region.height
        await pilot.press("N")
        assert area.cursor_location[0] == 200


async def test_a_search_with_capitals_matches_case_and_a_miss_says_so(here):
    log = here / "train.log"
    log.write_text("loss\nLoss\n")
    async with make_app(here).run_test(size=(80, 24)) as pilot:
        screen = await open_viewer(pilot, log)
        await pilot.press("slash", *"Loss", "enter")
        assert screen.query_one(LogText).cursor_location == (1, 4)
        await pilot.press("slash", "ctrl+u", *"absent", "enter")  # ctrl+u clears the search line
        await settle(pilot)
        assert "no match for 'absent'" in status(screen)
        assert any("no match for 'absent'" in n.message for n in pilot.app._notifications)


async def test_esc_on_the_search_line_closes_it_and_esc_again_leaves(here):
    log = here / "train.log"
    log.write_text("one\n")
    async with make_app(here).run_test(size=(80, 24)) as pilot:
        screen = await open_viewer(pilot, log)
        await pilot.press("slash", "o")
        await pilot.press("escape")
        assert pilot.app.screen is screen and not screen.query_one("#log-search").display
        await pilot.press("escape")
        assert pilot.app.screen is not screen


async def test_appended_lines_show_and_the_view_follows_the_end(here):
    log = here / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    async with make_app(here).run_test(size=(80, 24)) as pilot:
        screen = await open_viewer(pilot, log)
        area = screen.query_one(LogText)
        assert area.scroll_y == area.max_scroll_y > 0
        with log.open("a") as handle:
            handle.write("step 101/300  loss 0.5\n 5%|#  | 1/20 [00:00<00:01, 9.9it/s]\nhalf a li")
        screen.read_more()
        await settle(pilot)
        assert area.document.lines[-2:] == ["step 101/300  loss 0.5", "half a li"]  # the bar hidden, the unfinished line shown
        assert area.scroll_y == area.max_scroll_y
        with log.open("a") as handle:
            handle.write("ne\n")
        screen.read_more()
        await settle(pilot)
        assert area.document.lines[-2:] == ["step 101/300  loss 0.5", "half a line"]  # completed in place, not repeated
        assert "following" in status(screen)


async def test_a_view_scrolled_up_stays_where_it_is_while_lines_arrive(here):
    log = here / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    async with make_app(here).run_test(size=(80, 24)) as pilot:
        screen = await open_viewer(pilot, log)
        area = screen.query_one(LogText)
        await pilot.press("pageup", "pageup")
        await settle(pilot)
        top = area.scroll_y
        assert top < area.max_scroll_y
        with log.open("a") as handle:
            handle.write("new line\n")
        screen.read_more()
        await settle(pilot)
        assert area.document.lines[-1] == "new line" and area.scroll_y == top
        assert "paused (G follows)" in status(screen)
        await pilot.press("G")
        await settle(pilot)
        assert area.scroll_y == area.max_scroll_y


async def test_wrap_toggles(here):
    log = here / "train.log"
    log.write_text("x" * 300 + "\nshort\n")
    async with make_app(here).run_test(size=(80, 24)) as pilot:
        screen = await open_viewer(pilot, log)
        area = screen.query_one(LogText)
        assert area.soft_wrap and area.wrapped_document.height > 2 and area.max_scroll_x == 0
        await pilot.press("w")
        await settle(pilot)
        assert not area.soft_wrap and area.wrapped_document.height == 2 and area.max_scroll_x > 0
        assert "wrap off" in status(screen)


async def test_the_filter_hides_progress_bars_and_shows_them_again(here):
    log = here / "train.log"
    log.write_text(LOG)
    async with make_app(here).run_test(size=(80, 24)) as pilot:
        screen = await open_viewer(pilot, log)
        lines = screen.query_one(LogText).document.lines
        assert "epoch 0.3  loss 2.030  lr 2.0e-04  grad 0.60  4,102 tok/s" in lines
        assert not any("it/s]" in line or line.startswith("{'loss'") or not line for line in lines)
        assert "filter on, 3 hidden" in status(screen)
        await pilot.press("f")
        lines = screen.query_one(LogText).document.lines
        assert " 20%|##        | 2/10 [00:02<00:08, 1.0it/s]" in lines and any(line.startswith("{'loss'") for line in lines)
        assert "filter off" in status(screen)


async def test_a_missing_log_says_so_and_shows_up_once_written(here):
    log = here / "jobs" / "eval-1" / "job.log"
    async with make_app(here).run_test(size=(80, 24)) as pilot:
        screen = await open_viewer(pilot, log, "job.log of eval-1")
        assert status(screen) == "job.log does not exist yet: waiting for the job to write it"
        log.parent.mkdir(parents=True)
        log.write_bytes(b"[sft-tui] loading \xff model\n")  # not UTF-8: replaced, not a crash
        screen.read_more()
        await settle(pilot)
        assert screen.query_one(LogText).document.lines == ["[sft-tui] loading \ufffd model"]
        assert "does not exist" not in status(screen)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_viewer_snapshot(snap_compare, here, size):
    Path("train.log").write_text(LOG)
    assert snap_compare(make_app(here), terminal_size=size, run_before=opener(lambda: LogViewerScreen(Path("train.log"), "train.log of json-lora")))


def test_viewer_snapshot_with_a_match(snap_compare, here):
    Path("train.log").write_text(LOG)

    async def search(pilot):
        await opener(lambda: LogViewerScreen(Path("train.log"), "train.log of json-lora"))(pilot)
        await pilot.press("slash", *"eval", "enter")
        await settle(pilot)

    assert snap_compare(make_app(here), terminal_size=(80, 24), run_before=search)


# --- the eval report ---

def report_run(here: Path, with_report: bool = True) -> RunDir:
    run = RunDir(Path("home/runs/20261122-093000-json-lora"))
    run.path.mkdir(parents=True)
    if with_report:
        run.eval_dir.mkdir()
        run.eval_markdown_path.write_text(render_markdown(REPORT))  # as the eval job writes it
    return run


async def test_the_report_renders_the_table_and_the_answers(here):
    run = report_run(here)
    async with make_app(here).run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = EvalReportScreen(run)
        await pilot.app.push_screen(screen)
        await settle(pilot)
        assert not screen.query_one("#report-missing").display
        text = shown_text(screen.query_one(Markdown))
        for shown in ("Evaluation of 20261122-093000-json-lora", "response loss (held-out answers)", "3.062", "1.044", "better",
                      "valid JSON", "100%", "Answers side by side", "city=Bern", "(did not stop)"):
            assert shown in text, shown
        assert "&lt;br&gt;" not in text and "<br>" not in text


async def test_without_a_report_one_line_says_how_to_make_one(here):
    run = report_run(here, with_report=False)
    async with make_app(here).run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = EvalReportScreen(run)
        await pilot.app.push_screen(screen)
        await settle(pilot)
        line = str(screen.query_one("#report-missing", Static).content)
        assert line.startswith(f"no eval report for {run.id} yet") and "press v in its monitor" in line and f"sft-tui eval {run.id}" in line
        assert not screen.query_one("#report-scroll").display
        run.eval_dir.mkdir()
        run.eval_markdown_path.write_text(render_markdown(REPORT))
        await pilot.press("r")
        await settle(pilot)
        assert screen.query_one("#report-scroll").display and "response loss" in shown_text(screen.query_one(Markdown))
        await pilot.press("escape")
        assert pilot.app.screen is not screen


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_report_snapshot(snap_compare, here, size):
    run = report_run(here)
    assert snap_compare(make_app(here), terminal_size=size, run_before=opener(lambda: EvalReportScreen(run)))


def test_report_snapshot_when_missing(snap_compare, here):
    run = report_run(here, with_report=False)
    assert snap_compare(make_app(here), terminal_size=(80, 24), run_before=opener(lambda: EvalReportScreen(run)))
