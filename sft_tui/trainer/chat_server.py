"""The chat job: a run's tuned model (and its base) answering on a Unix socket, one client, JSON lines.

Started like every job (detached, supervised, with a status and a log under jobs/chat-N/).
The socket lives in a private temp folder (0700: only its owner can connect); its path is
the job status's `endpoint`, written once the models are loaded (phase "ready"). The
client (tui.chat_backend) speaks:
  in   {"messages": [{"role", "content"}...], "model": "tuned" | "base", "max_new_tokens": 256}
  out  {"token": "text"} ... then {"done": true, "stopped": bool, "tokens": n}
  out  {"error": "one line"}                              when a request cannot be served
The job ends (completed) when its client disconnects, or when nobody connects within
CONNECT_TIMEOUT_S. Decoding is greedy, so the same prompt gives the same answer.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
from pathlib import Path

from sft_tui.core.runs.reporter import StatusReporter
from sft_tui.core.runs.rundir import RunDir

CONNECT_TIMEOUT_S = 600.0


def _answer(loaded, request: dict, send) -> None:
    import torch
    from transformers import TextIteratorStreamer

    from sft_tui.trainer.inference import end_token_ids, prompt_text

    tokenizer = loaded.tokenizer
    which = request.get("model", "tuned")
    ids = tokenizer(prompt_text(tokenizer, request["messages"]), add_special_tokens=False, return_tensors="pt").to(loaded.device)
    with loaded.use(which) as model:
        ends = end_token_ids(tokenizer, model)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict = {}

        def generate() -> None:
            with torch.inference_mode():
                result["out"] = model.generate(**ids, max_new_tokens=int(request.get("max_new_tokens", 256)), do_sample=False,
                                               eos_token_id=ends, pad_token_id=tokenizer.pad_token_id, streamer=streamer)

        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        for piece in streamer:
            if piece:
                send({"token": piece})
        worker.join()
    new = result["out"][0, ids["input_ids"].shape[1]:].tolist()
    send({"done": True, "stopped": bool(new) and new[-1] in ends, "tokens": len(new)})


def serve_chat(run: RunDir, reporter: StatusReporter, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> tuple[str, str]:
    """Load the run, answer one client until it leaves; returns (result line, '')."""
    from sft_tui.trainer.inference import load_run

    folder = Path(tempfile.mkdtemp(prefix="sft-tui-chat-"))  # short path (sockets allow ~100 bytes), private
    path = folder / "chat.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        server.listen(1)
        reporter.set_phase("loading the models")
        loaded = load_run(run)
        reporter.set_phase(f"ready ({loaded.note})", endpoint=str(path))
        server.settimeout(connect_timeout_s)
        try:
            connection, _ = server.accept()
        except socket.timeout:
            return f"no client connected within {connect_timeout_s:.0f} s", ""
        answered = 0
        with connection, connection.makefile("rw", encoding="utf-8") as stream:
            def send(message: dict) -> None:
                stream.write(json.dumps(message, ensure_ascii=False) + "\n")
                stream.flush()

            send({"ready": True, "note": loaded.note})
            for line in stream:
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                    _answer(loaded, request, send)
                    answered += 1
                    reporter.set_progress(answered)
                except (BrokenPipeError, ConnectionResetError):
                    break
                except Exception as exc:  # a bad request must not end the session
                    send({"error": f"bad request: {type(exc).__name__}: {exc}"})
        return f"answered {answered} question{'s' if answered != 1 else ''}", ""
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)
