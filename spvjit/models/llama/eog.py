"""Which tokens end generation: the set llama.cpp stops at, from a GGUF's vocabulary.

llama.cpp (``llama_vocab::load``, src/llama-vocab.cpp) stops at every *end-of-generation*
token, not only at ``eos``:

* the ids the metadata names: ``tokenizer.ggml.eos_token_id``, ``eot_token_id``,
  ``eom_token_id`` and the fill-in-the-middle pad / repo / file-separator ids
  (``fim_pad_token_id``, ``fim_rep_token_id``, ``fim_sep_token_id``); a FIM id the
  metadata does not give is found by its text (FIM_TEXTS), as llama.cpp does;
* every token whose text is a known end-of-turn marker (EOG_TEXTS): ``<|im_end|>``
  (ChatML: SmolLM2, Qwen2), ``<|eot_id|>`` and ``<|eom_id|>`` (Llama 3),
  ``<end_of_turn>`` (Gemma), ``<|endoftext|>`` and the like. llama.cpp treats these as
  control tokens whatever type the file gives them; so does this set.

For SmolLM2-135M-Instruct that is {0: <|endoftext|>, 2: <|im_end|> (also eos), 4: <reponame>}.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import ModelError

EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
             "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>")
# fill-in-the-middle tokens that end generation, found by text when the metadata has no id
FIM_TEXTS = {
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}
ID_KEYS = ("eos", "eot", "eom", "fim_pad", "fim_rep", "fim_sep")


def end_of_generation_ids(tokens: list[str], get: Callable[[str], Any], where: str = "tokenizer") -> frozenset[int]:
    """The end-of-generation token ids of a vocabulary ``tokens``; ``get(key)`` reads GGUF
    metadata (None when absent). An id outside the vocabulary is a ModelError naming its key."""
    ids: set[int] = set()
    first_of = {}
    for i, t in enumerate(tokens):
        first_of.setdefault(t, i)
    for name in ID_KEYS:
        key = f"tokenizer.ggml.{name}_token_id"
        tid = get(key)
        if tid is None:
            found = [first_of[t] for t in FIM_TEXTS.get(name, ()) if t in first_of]
            ids.update(found[:1])
            continue
        if isinstance(tid, bool) or not isinstance(tid, int) or not 0 <= tid < len(tokens):
            raise ModelError(f"{where}: metadata key {key!r}: {tid!r} is not a token id")
        ids.add(tid)
    ids.update(i for i, t in enumerate(tokens) if t in EOG_TEXTS)
    return frozenset(ids)
