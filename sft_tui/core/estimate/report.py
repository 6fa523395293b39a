"""The readable estimate report (text), shared by `sft-tui estimate` and the TUI's estimator screen."""

from __future__ import annotations

from sft_tui.core.estimate.fit import Estimate
from sft_tui.core.estimate.sharding import headline
from sft_tui.core.units import GIB

BAR = 24
STACK = 48
FILL = {"weights": "█", "trainable": "▓", "gradients": "▒", "optimizer": "░", "activations": "▚", "logits": "▞", "reference": "▄", "overhead": "·"}


def stacked_bar(memory) -> str:
    """The whole peak as one bar, a fill character per term (each term keeps at least one cell when present)."""
    peak = memory.peak_bytes or 1
    cells = [(t.key, max(1, round(STACK * t.bytes / peak))) for t in memory.terms if t.bytes > 0]
    return "".join(FILL[key] * count for key, count in cells)[:STACK + len(cells)]


def _bar(part: float, whole: float) -> str:
    filled = round(BAR * part / whole) if whole else 0
    return "█" * filled + "·" * (BAR - filled)


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _other_phases(memory) -> str:
    """'; reference forward 30.12 GiB' for the objectives with a reference forward: its cost shows even when it is not the peak."""
    others = [(phase, size) for phase, size in memory.phase_bytes if phase != memory.phase and phase == "reference forward"]
    return "".join(f"; {phase} {size / GIB:.2f} GiB" for phase, size in others)


def render_estimate(e: Estimate, config: str = "CONFIG") -> str:
    """The readable report: settings, a bar per term with its reason, fit, room on this box now, limits, time, suggestions.

    `config` names the run config in the queue hint (`sft-tui train CONFIG --queue`).
    """
    m, s = e.memory, e.memory.settings
    lines = [
        f"{m.model} · {s.objective + ' · ' if s.objective != 'sft' else ''}{s.method} · seq {s.seq_len} · micro-batch {s.batch_size} (accumulation {s.grad_accum}) · "
        f"checkpointing {'on' if s.gradient_checkpointing else 'off'} · {s.precision} · {s.attention} · {s.optimizer}"
        + (" · Liger" if s.liger else "") + ("" if s.padded else " · packed"),
        (f"{m.moe.line()}, " if m.moe else f"{m.params / 1e9:.2f}B params, ")
        + f"{m.trainable_params / 1e6:.1f}M trainable ({100 * m.trainable_params / m.params:.2f}%)"
        + (f", LoRA r={s.lora_r} on {', '.join(s.lora_targets)}" if s.method != "full" else ""),
        "",
    ]
    per_gpu = headline(s)
    if per_gpu:
        lines[-1:-1] = [f"{per_gpu}: every figure below is one GPU's"]
    peak = m.peak_gib
    lines.append(f"  {stacked_bar(m)}")
    lines.append("  " + "  ".join(f"{FILL[key]} {key}" for key in dict.fromkeys(t.key for t in m.terms if t.bytes > 0)))
    lines.append("")
    for term in m.terms:
        gib = term.bytes / GIB
        named = f"{term.label}: " if term.label else ""
        lines.append(f"  {term.key:<12}{gib:8.2f} GiB  {_bar(gib, peak)}  {named}{term.explanation}")
    lines.append(f"  {'peak':<12}{peak:8.2f} GiB  {'per GPU ' if per_gpu else ''}(at the {m.phase}{_other_phases(m)})")
    lines.append("")
    if e.gpu is None:
        lines.append("GPU: no NVIDIA GPU detected; pass --gpu NAME (e.g. A100-80GB, 4090) or --gpu-gib N to check the fit")
    else:
        verdict = f"fits, {e.headroom_gib:.1f} GiB headroom" if e.fits else f"does NOT fit: {-e.headroom_gib:.1f} GiB over"
        each = f" each x {s.gpus}" if s.gpus > 1 else ""
        lines.append(f"GPU: {e.gpu.name}, {e.gpu.memory_gib:.1f} GiB{each} ({e.gpu.source}) -> {verdict}")
        if e.room:
            lines.append(e.room.line(config))
        batch = e.max_batch_size if e.max_batch_size else "none (not even 1)"
        seq = e.max_seq_len if e.max_seq_len else "none"
        lines.append(f"largest micro-batch at seq {s.seq_len}: {batch}; longest sequence at micro-batch {s.batch_size}: {seq} (searched up to {e.seq_cap})")
        if e.time:
            t = e.time
            eta = f"; {_duration(t.eta_s)} for the given tokens" if t.eta_s is not None else " (--tokens N gives an ETA)"
            spread = f" {t.spread_note()}" if t.gpus > 1 else ""
            lines.append(f"time: about {t.tokens_per_s:,.0f} tokens/s{spread}, assuming {t.utilisation:.0%} of {t.peak_tflops:g} TFLOP/s{eta}")
            if t.padding_share > 0:
                lines.append(f"  {t.padding_note()} (the ETA's rate)")
            if m.moe:
                lines.append(f"  from the {m.moe.active / 1e9:.2f}B parameters a token goes through (its {m.moe.experts_per_token} experts), "
                             f"not all {m.moe.resident / 1e9:.2f}B")
            if t.objective_note:
                lines.append(f"  {t.objective_note.removeprefix('; ')}, per example")
    for note in e.notes:
        lines.append(f"note: {note}")
    if e.suggestions:
        lines += ["", "to make it fit:"]
        for x in e.suggestions:
            lines.append(f"  {'fits' if x.fits else 'no  '}  {x.peak_gib:7.2f} GiB  {x.change}")
    lines += ["", "assumptions:"] + [f"  - {a}" for a in m.assumptions]
    return "\n".join(lines) + "\n"
