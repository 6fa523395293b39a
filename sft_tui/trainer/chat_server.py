"""`python -m sft_tui.trainer.chat_server RUN_DIR`: the chat screen's model process.

The TUI never imports torch, so chat runs here and talks JSON lines:
  out  {"ready": true, "note": "..."}                     once the models are loaded
  in   {"messages": [{"role", "content"}...], "model": "tuned" | "base", "max_new_tokens": 256}
  out  {"token": "text"} ... then {"done": true, "stopped": bool, "tokens": n}
  out  {"error": "one line"}                              when a request cannot be served
Decoding is greedy, so the same prompt gives the same answer from the same model.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path


def _send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def serve(run_dir: Path) -> None:
    """Load the run and answer requests from stdin until it closes."""
    import torch
    from transformers import TextIteratorStreamer

    from sft_tui.core.errors import UserError
    from sft_tui.core.runs import RunDir
    from sft_tui.trainer.inference import end_token_ids, load_run, prompt_text

    try:
        loaded = load_run(RunDir(run_dir))
    except UserError as exc:
        _send({"error": exc.line()})
        return
    _send({"ready": True, "note": loaded.note})
    tokenizer = loaded.tokenizer
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            which = request.get("model", "tuned")
            ids = tokenizer(prompt_text(tokenizer, request["messages"]), add_special_tokens=False, return_tensors="pt").to(loaded.device)
        except Exception as exc:  # a bad request must not end the session
            _send({"error": f"bad request: {exc}"})
            continue
        with loaded.use(which) as model:
            ends = end_token_ids(tokenizer, model)
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            result: dict = {}

            def generate(model=model, ends=ends, streamer=streamer, result=result) -> None:
                with torch.inference_mode():
                    result["out"] = model.generate(**ids, max_new_tokens=int(request.get("max_new_tokens", 256)), do_sample=False,
                                                   eos_token_id=ends, pad_token_id=tokenizer.pad_token_id, streamer=streamer)

            worker = threading.Thread(target=generate, daemon=True)
            worker.start()
            for piece in streamer:
                if piece:
                    _send({"token": piece})
            worker.join()
        new = result["out"][0, ids["input_ids"].shape[1]:].tolist()
        _send({"done": True, "stopped": bool(new) and new[-1] in ends, "tokens": len(new)})


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
