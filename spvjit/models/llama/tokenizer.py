"""Tokenizer for GGUF vocabularies: byte-level BPE ("gpt2") and SentencePiece ("llama").

Special tokens. Control tokens (``tokenizer.ggml.token_type`` 3, e.g. ``<|im_start|>``) are
recognized as whole strings in the input only when ``parse_special`` is true; otherwise
their text is tokenized like any other. User-defined tokens (type 4) are always
recognized, as llama.cpp does. Text between special tokens is tokenized on its own.

Decoding. Normal tokens decode to the bytes they stand for; control tokens decode to
their text when ``special`` is true and to nothing otherwise. Tokens can end inside a
UTF-8 character, so streaming output goes through :class:`StreamDecoder`.
"""

from __future__ import annotations

import codecs
import re
from typing import Any, Callable

from .bpe import BytePairEncoder, bytes_to_text, parse_merges, text_to_bytes
from .eog import end_of_generation_ids
from .errors import ModelError
from .pretokenize import PRE_TOKENIZERS, pretokenize
from .sentencepiece import SPACE, SentencePieceEncoder, byte_piece_value

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SUPPORTED_MODELS = ("gpt2", "llama")


class Tokenizer:
    def __init__(
        self,
        model: str,
        tokens: list[str],
        token_types: list[int],
        *,
        scores: list[float] | None = None,
        merges: list[str] | None = None,
        pre: str = "default",
        bos_id: int | None = None,
        eos_id: int | None = None,
        unk_id: int | None = None,
        add_bos: bool = False,
        add_eos: bool = False,
        add_space_prefix: bool | None = None,
        eog_ids: frozenset[int] | None = None,
        where: str = "tokenizer",
    ):
        self.where = where
        if model not in SUPPORTED_MODELS:
            raise ModelError(
                f"{where}: metadata key 'tokenizer.ggml.model': tokenizer {model!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_MODELS)})"
            )
        if len(token_types) != len(tokens):
            raise ModelError(f"{where}: metadata key 'tokenizer.ggml.token_type' has {len(token_types)} entries for {len(tokens)} tokens")
        for key, tid in (("bos", bos_id), ("eos", eos_id), ("unknown", unk_id)):
            if tid is not None and not 0 <= tid < len(tokens):
                raise ModelError(f"{where}: metadata key 'tokenizer.ggml.{key}_token_id': {tid} is not a token id")
        self.model, self.tokens, self.token_types = model, tokens, token_types
        self.bos_id, self.eos_id, self.unk_id = bos_id, eos_id, unk_id
        # tokens that end generation (see eog.py); from_metadata finds all of llama.cpp's
        self.eog_ids = frozenset(eog_ids) if eog_ids is not None else frozenset({eos_id} - {None})
        self.add_bos, self.add_eos = add_bos, add_eos
        # SentencePiece models conventionally prefix a space; byte-level BPE never does.
        self.add_space_prefix = (model == "llama") if add_space_prefix is None else bool(add_space_prefix)

        # Tokens that can be produced from ordinary text.
        self._text_ids = {t: i for i, t in enumerate(tokens) if token_types[i] in (NORMAL, USER_DEFINED)}
        self._control = re.compile(self._alternation(lambda ty: ty in (CONTROL, USER_DEFINED)))
        self._user_defined = re.compile(self._alternation(lambda ty: ty == USER_DEFINED))
        self._special_ids = {t: i for i, t in enumerate(tokens) if token_types[i] in (CONTROL, USER_DEFINED)}

        self._byte_of: dict[int, int] = {}  # id -> byte value for <0xXX> tokens
        for i, t in enumerate(tokens):
            if token_types[i] == BYTE and (b := byte_piece_value(t)) is not None:
                self._byte_of[i] = b
        if model == "gpt2":
            if pre not in PRE_TOKENIZERS:
                raise ModelError(
                    f"{where}: metadata key 'tokenizer.ggml.pre': pre-tokenizer {pre!r} is not supported "
                    f"(supported: {', '.join(PRE_TOKENIZERS)})"
                )
            if merges is None:
                raise ModelError(f"{where}: metadata key 'tokenizer.ggml.merges' is missing")
            self.pre = pre
            self._bpe = BytePairEncoder(parse_merges(merges))
        else:
            self.pre = None
            self._spm = SentencePieceEncoder(
                self._text_ids,
                list(scores) if scores is not None else [0.0] * len(tokens),
                {b: i for i, b in self._byte_of.items()},
                unk_id,
            )

    def _alternation(self, keep: Callable[[int], bool]) -> str:
        """A regex matching any of the chosen tokens' texts, longest first."""
        texts = sorted({t for t, ty in zip(self.tokens, self.token_types) if keep(ty) and t}, key=len, reverse=True)
        return "|".join(re.escape(t) for t in texts) or r"(?!)"  # (?!) never matches

    @classmethod
    def from_metadata(cls, get: Callable[[str], Any], where: str = "tokenizer") -> "Tokenizer":
        """Build from GGUF metadata; ``get(key)`` returns a value or None if absent."""
        model = get("tokenizer.ggml.model")
        tokens = get("tokenizer.ggml.tokens")
        if model is None:
            raise ModelError(f"{where}: metadata key 'tokenizer.ggml.model' is missing")
        if tokens is None:
            raise ModelError(f"{where}: metadata key 'tokenizer.ggml.tokens' is missing")
        types = get("tokenizer.ggml.token_type")
        if types is None:  # old files: everything normal, except what looks like a byte token
            types = [BYTE if byte_piece_value(t) is not None else NORMAL for t in tokens]
        return cls(
            model,
            tokens,
            types,
            scores=get("tokenizer.ggml.scores"),
            merges=get("tokenizer.ggml.merges"),
            pre=get("tokenizer.ggml.pre") or "default",
            bos_id=get("tokenizer.ggml.bos_token_id"),
            eos_id=get("tokenizer.ggml.eos_token_id"),
            unk_id=get("tokenizer.ggml.unknown_token_id"),
            # Same defaults as LlamaConfig: SentencePiece adds BOS unless told otherwise.
            add_bos=_flag(get("tokenizer.ggml.add_bos_token"), model == "llama"),
            add_eos=_flag(get("tokenizer.ggml.add_eos_token"), False),
            add_space_prefix=get("tokenizer.ggml.add_space_prefix"),
            eog_ids=end_of_generation_ids(tokens, get, where),
            where=where,
        )

    @classmethod
    def from_gguf(cls, model_file) -> "Tokenizer":
        """The tokenizer of a loaded :class:`LlamaModelFile`."""
        return cls.from_metadata(lambda key: model_file.metadata(key, None), model_file.path.name)

    @property
    def n_vocab(self) -> int:
        return len(self.tokens)

    def is_control(self, token_id: int) -> bool:
        return self.token_types[token_id] in (CONTROL, UNKNOWN)

    # -- encoding ---------------------------------------------------------------------

    def encode(self, text: str, add_bos: bool | None = None, parse_special: bool = True) -> list[int]:
        """Token ids for ``text``; ``add_bos=None`` follows the file's add_bos_token."""
        ids: list[int] = []
        if self.add_bos if add_bos is None else add_bos:
            if self.bos_id is None:
                raise ModelError(f"{self.where}: metadata key 'tokenizer.ggml.bos_token_id' is missing, cannot add BOS")
            ids.append(self.bos_id)
        special = self._control if parse_special else self._user_defined
        after_special = True  # SentencePiece: each text run after a special token gets "▁"
        pos = 0
        for m in special.finditer(text):
            if m.start() > pos:
                ids += self._encode_text(text[pos : m.start()], after_special)
            ids.append(self._special_ids[m.group()])
            after_special, pos = True, m.end()
        if pos < len(text):
            ids += self._encode_text(text[pos:], after_special)
        if self.add_eos and self.eos_id is not None:
            ids.append(self.eos_id)
        return ids

    def _encode_text(self, text: str, after_special: bool) -> list[int]:
        if self.model == "llama":
            if self.add_space_prefix and after_special:
                text = " " + text
            try:
                return self._spm.encode(text.replace(" ", SPACE))
            except KeyError as e:
                raise ModelError(f"{self.where}: cannot tokenize: {e.args[0]}") from None
        ids: list[int] = []
        for word in pretokenize(self.pre, text):
            for piece in self._bpe.split(bytes_to_text(word.encode("utf-8"))):
                tid = self._text_ids.get(piece)
                if tid is None:
                    ids += self._unmerged(piece)
                else:
                    ids.append(tid)
        return ids

    def _unmerged(self, piece: str) -> list[int]:
        """A merge result missing from the vocabulary: fall back to its characters."""
        out = []
        for ch in piece:
            tid = self._text_ids.get(ch, self.unk_id)
            if tid is None:
                raise ModelError(f"{self.where}: cannot tokenize: byte piece {ch!r} is not in the vocabulary")
            out.append(tid)
        return out

    # -- decoding ---------------------------------------------------------------------

    def token_to_bytes(self, token_id: int, special: bool = True) -> bytes:
        """The bytes token ``token_id`` stands for (control tokens: their text, or b"")."""
        if not 0 <= token_id < len(self.tokens):
            raise ValueError(f"token id {token_id} is out of range 0..{len(self.tokens) - 1}")
        piece, ty = self.tokens[token_id], self.token_types[token_id]
        if token_id in self._byte_of:
            return bytes([self._byte_of[token_id]])
        if ty in (CONTROL, UNKNOWN):
            return piece.encode("utf-8") if special else b""
        if ty == USER_DEFINED:
            return piece.encode("utf-8")
        if self.model == "gpt2":
            return text_to_bytes(piece)
        return piece.replace(SPACE, " ").encode("utf-8")

    def token_to_piece(self, token_id: int, special: bool = True) -> str:
        """The token's text; a token holding part of a UTF-8 character shows U+FFFD."""
        return self.token_to_bytes(token_id, special).decode("utf-8", errors="replace")

    def decode(self, ids, special: bool = True) -> str:
        """The text of a token sequence (inverse of encode without BOS)."""
        dec = StreamDecoder(self, special=special)
        return "".join(dec.push(int(i)) for i in ids) + dec.flush()

    def stream_decoder(self, special: bool = True) -> "StreamDecoder":
        return StreamDecoder(self, special=special)


def _flag(value: Any, default: bool) -> bool:
    return default if value is None else bool(value)


class StreamDecoder:
    """Turns tokens into text one at a time, holding back incomplete UTF-8 characters.

    ``push(id)`` returns only complete characters; bytes that can never form one decode
    as U+FFFD. ``flush()`` returns whatever is still held back. With a SentencePiece
    vocabulary that adds a space prefix, the space in front of the first text is dropped.
    """

    def __init__(self, tokenizer: Tokenizer, special: bool = True):
        self.tokenizer = tokenizer
        self.special = special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._strip_space = tokenizer.model == "llama" and tokenizer.add_space_prefix

    def push(self, token_id: int) -> str:
        data = self.tokenizer.token_to_bytes(token_id, self.special)
        if self._strip_space and data:
            # Only the very first text can carry the prefix encode() added.
            self._strip_space = False
            if data.startswith(b" "):
                data = data[1:]
        return self._utf8.decode(data)

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
