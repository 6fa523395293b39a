"""Load the tokenizer and model the way each recipe needs them (the estimator assumes exactly this).

full:  fp32 weights (the master copy); bf16/fp16 only under autocast.
lora:  the base in the compute dtype; peft keeps the adapters in fp32.
qlora: linears in NF4 with double quantisation via bitsandbytes, then peft's
       prepare_model_for_kbit_training (norms/embeddings/head to fp32, input grads on).
"""

from __future__ import annotations

from pathlib import Path

import torch

from sft_tui.core.config.schema import RunConfig
from sft_tui.core.models.files import model_type
from sft_tui.core.models.kernels import attention_for

# The default templates render tools too (tool-calling rows): the declared tools before the conversation,
# an assistant's calls as <tool_call>{"name": ..., "arguments": ...}</tool_call> after its text, a tool's
# result as its own turn. Conversations without tools render exactly as they did before tools existed.
_CALLS = (
    "{% for call in message['tool_calls'] %}{% set call = call['function'] if call['function'] is defined else call %}"
    "{% if not loop.first or message['content'] %}{{ '\\n' }}{% endif %}"
    "{{ '<tool_call>{\"name\": ' + call['name'] | tojson + ', \"arguments\": ' }}"
    "{% if call['arguments'] is string %}{{ call['arguments'] }}{% else %}{{ call['arguments'] | tojson }}{% endif %}"
    "{{ '}</tool_call>' }}{% endfor %}"
)
_TOOLS = "{% for tool in tools %}{{ (tool | tojson) + '\\n' }}{% endfor %}"

# ChatML, for tokenizers that already know <|im_start|>/<|im_end|>
CHATML_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\\n' }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}{% endif %}"
    "{{ 'You may call these tools; write each call as <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>.\\n' }}"
    + _TOOLS + "{{ '<|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}{% if not (tools and loop.first and message['role'] == 'system') %}"  # merged into the tools block
    "{{ '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') }}"
    "{% if message['tool_calls'] %}" + _CALLS + "{% endif %}{{ '<|im_end|>' + '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# A plain template for base models without one: no new tokens (they would be untrained under LoRA); the
# assistant turn ends with the tokenizer's own EOS so generation stops (after a call too: the caller runs the tool).
PLAIN_TEMPLATE = (
    "{% if tools %}{{ '### Tools:\\n' }}" + _TOOLS + "{{ '\\n' }}{% endif %}"
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### User:\\n' + message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'tool' %}{{ '### Tool result:\\n' + message['content'] + '\\n\\n' }}"
    "{% else %}{{ '### Assistant:\\n' + (message['content'] or '') }}{% if message['tool_calls'] %}" + _CALLS + "{% endif %}"
    "{{ eos_token + '\\n\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}"
)


def resolve_precision(requested: str) -> str:
    """auto -> bf16 on a GPU that has it, fp16 on an older GPU, fp32 on the CPU."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def load_tokenizer(folder: Path, config: RunConfig):
    """The tokenizer with a chat template (config's, its own, or a default) and a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=config.model.trust_remote_code)
    if config.model.chat_template:
        tokenizer.chat_template = config.model.chat_template
    elif not tokenizer.chat_template:
        vocab = tokenizer.get_vocab()
        tokenizer.chat_template = CHATML_TEMPLATE if "<|im_start|>" in vocab and "<|im_end|>" in vocab else PLAIN_TEMPLATE
        print(f"no chat template in {folder}: using the default {'ChatML' if tokenizer.chat_template == CHATML_TEMPLATE else 'plain'} one (saved with the output)", flush=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(folder: Path, config: RunConfig, precision: str):
    """The model on the right device, in the recipe's dtypes."""
    from transformers import AutoModelForCausalLM

    from sft_tui.trainer.ranks import local_rank, sharded

    method = config.method.name
    compute = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    device = f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"  # each rank its own GPU of CUDA_VISIBLE_DEVICES
    # FSDP places the shards itself: the whole model must not land on one GPU first (a 70B would not fit)
    fsdp = sharded(config)
    if fsdp:
        device = "cpu"
    family = model_type(folder)
    attention = attention_for(family, config.training.attention)
    if attention != config.training.attention:
        print(f"attention: {attention} ({family} has no {config.training.attention} path in transformers)", flush=True)
    kwargs = dict(local_files_only=True, trust_remote_code=config.model.trust_remote_code, attn_implementation=attention)
    if method == "full":
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs).to(device)
    elif method == "lora":
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=compute, **kwargs).to(device)
    else:
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        dtype = compute if precision != "fp32" else torch.bfloat16
        # under FSDP the 4-bit weights are stored in the compute dtype, so FSDP can shard them like any other tensor
        storage = dict(bnb_4bit_quant_storage=dtype) if fsdp else {}
        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=config.method.quant_type,
                                          bnb_4bit_use_double_quant=config.method.double_quant,
                                          bnb_4bit_compute_dtype=dtype, **storage)
        placement = {} if fsdp else dict(device_map={"": device})
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, quantization_config=quantization, **placement, **kwargs)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.training.gradient_checkpointing)
    model.config.use_cache = False  # the KV cache is for generation; in training it only costs memory
    return model


def attach_adapter(model, config: RunConfig):
    """The model with [model] adapter loaded as the trainable adapter (SFT, then DPO on top of it), or the model as it was.

    preflight has already turned a run id into that run's adapter folder (an absolute path).
    """
    if not config.model.adapter:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, config.model.adapter, is_trainable=True)


def lora_config(config: RunConfig):
    """peft's LoraConfig from the [method] section (None for full fine-tuning, or when training on from an adapter)."""
    if config.method.name == "full" or config.model.adapter:
        return None
    from peft import LoraConfig

    targets = config.method.target_modules
    return LoraConfig(r=config.method.lora_r, lora_alpha=config.method.lora_alpha, lora_dropout=config.method.lora_dropout,
                      target_modules="all-linear" if "all-linear" in targets else list(targets),
                      use_rslora=config.method.use_rslora, use_dora=config.method.use_dora, task_type="CAUSAL_LM")
