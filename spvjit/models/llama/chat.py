"""Chat prompts from a GGUF's ``tokenizer.chat_template``, without a Jinja engine.

Templates are recognized by their markers and rendered by hand:

* ChatML (``<|im_start|>``): ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message.
  Templates such as SmolLM2's and Qwen2's write a fixed system message when the first
  message is not from the system; that message is read out of the template's own string
  literals, so the model gets exactly the prompt it was trained with.
* Llama-3 (``<|start_header_id|>``): ``{bos}<|start_header_id|>{role}<|end_header_id|>\\n\\n
  {content, stripped}<|eot_id|>`` per message. Llama-3.1's extra system header
  (knowledge cut-off and date) is not reproduced.

Anything else raises ModelError rather than guessing a format.
"""

from __future__ import annotations

import re

from .errors import ModelError

TEMPLATE_KEY = "tokenizer.chat_template"

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", re.S)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "'": "'", '"': '"', "\\": "\\"}


def chat_template_of(model_file) -> str:
    """The chat template stored in a loaded model file (ModelError if it has none)."""
    template = model_file.metadata(TEMPLATE_KEY, None)
    if not template:
        raise ModelError(f"{model_file.path.name}: metadata key {TEMPLATE_KEY!r} is missing")
    try:
        template_kind(template)
    except ModelError as e:  # say which file's template it is
        raise ModelError(f"{model_file.path.name}: metadata key {TEMPLATE_KEY!r}: {e}") from None
    return template


def template_kind(template: str) -> str:
    """"chatml" or "llama3"; ModelError for a template this module cannot render."""
    if "<|im_start|>" in template:
        return "chatml"
    if "<|start_header_id|>" in template:
        return "llama3"
    head = " ".join(template.split())[:60]
    raise ModelError(f"chat template not recognized (supported: ChatML, Llama-3): {head!r}...")


def _string_literals(template: str) -> list[str]:
    """The unescaped string literals inside the template's {{ }} and {% %} tags."""
    out = []
    for tag in _TAG.findall(template):
        for m in _STRING.finditer(tag):
            raw = m.group(1) if m.group(1) is not None else m.group(2)
            out.append(re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), "\\" + e.group(1)), raw, flags=re.S))
    return out


def default_system_prompt(template: str) -> str | None:
    """The system message a ChatML template inserts when the conversation has none."""
    for literal in _string_literals(template):
        m = re.fullmatch(r"<\|im_start\|>system\n(.*?)<\|im_end\|>\n?", literal, re.S)
        if m:
            return m.group(1)
    return None


def _check(messages: list[dict]) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
            raise ValueError(f"messages[{i}] must be a dict with string 'role' and 'content'")


def render_chat(messages: list[dict], template: str, add_generation_prompt: bool = True, *, bos_token: str = "") -> str:
    """The prompt text for ``messages`` in ``template``'s format.

    ``bos_token`` is written where a Llama-3 template writes ``bos_token``; leave it empty
    when the tokenizer adds BOS itself (``add_bos_token``), or it would appear twice.
    Encode the result with ``parse_special=True`` so the markers become control tokens.
    """
    _check(messages)
    kind = template_kind(template)
    parts: list[str] = []
    if kind == "chatml":
        system = default_system_prompt(template)
        if system is not None and messages[0]["role"] != "system":
            parts.append(f"<|im_start|>system\n{system}<|im_end|>\n")
        for msg in messages:
            parts.append(f"<|im_start|>{msg['role']}\n{msg['content']}<|im_end|>\n")
        if add_generation_prompt:
            parts.append("<|im_start|>assistant\n")
    else:
        parts.append(bos_token)
        for msg in messages:
            parts.append(f"<|start_header_id|>{msg['role']}<|end_header_id|>\n\n{msg['content'].strip()}<|eot_id|>")
        if add_generation_prompt:
            parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)
