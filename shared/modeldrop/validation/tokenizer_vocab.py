"""What the tokenizer files say about token ids: added tokens, the highest id, the EOS token; and
whether every id the tokenizer can produce has a row in the embedding matrix.

tokenizer.json is read whole within the catalog's tokenizer_json_bytes (40 MiB: Gemma 3's, the
largest of the supported families, is about 33 MiB) and parsed once: the check needs the size of
`model.vocab` (a mapping of token to id for BPE/WordPiece/WordLevel, a list of [piece, score]
for Unigram) and the `added_tokens` array. A larger file is not read; the check is skipped with
an info. Parsing costs memory: a hostile 58 MiB file of 3.3 million tiny tokens peaked at
694 MiB, so the bound keeps a worst case near 480 MiB, inside the 1 GiB of reconcile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from modeldrop.domain.findings import Finding, error, excerpt, info

MAX_ID_DIGITS = 12  # added_tokens_decoder keys are decimal ids; longer ones are not token ids


def load_json_object(data: bytes) -> dict[str, Any] | None:
    """A JSON object from bytes, or None for anything else (not UTF-8, not JSON, too deep)."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _decimal(key: Any) -> bool:
    return isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= MAX_ID_DIGITS


def _is_id(value: Any) -> bool:
    return type(value) is int and value >= 0


@dataclass
class TokenizerFacts:
    added: dict[str, int] = field(default_factory=dict)  # added token content -> id
    vocab: dict[str, Any] = field(default_factory=dict)  # tokenizer.json model.vocab (mapping)
    highest: int | None = None
    highest_source: str = ""
    eos_token: str | None = None

    def token_id(self, token: str) -> int | None:
        found = self.added.get(token, self.vocab.get(token))
        return found if _is_id(found) else None

    def _offer(self, token_id: int, source: str) -> None:
        if self.highest is None or token_id > self.highest:
            self.highest, self.highest_source = token_id, source


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def tokenizer_facts(
    tokenizer_config: dict[str, Any] | None, tokenizer_json: dict[str, Any] | None
) -> TokenizerFacts:
    facts = TokenizerFacts()
    if tokenizer_json is not None:
        model = tokenizer_json.get("model")
        vocab = model.get("vocab") if isinstance(model, dict) else None
        if isinstance(vocab, dict):
            facts.vocab = vocab
            ids = [v for v in vocab.values() if _is_id(v)]
            if ids:
                facts._offer(max(ids), f"tokenizer.json model.vocab ({len(vocab)} entries)")
        elif isinstance(vocab, list) and vocab:  # Unigram: ids are positions
            facts._offer(len(vocab) - 1, f"tokenizer.json model.vocab ({len(vocab)} pieces)")
        added = tokenizer_json.get("added_tokens")
        for entry in added if isinstance(added, list) else []:
            if isinstance(entry, dict) and _is_id(entry.get("id")):
                content = entry.get("content")
                if isinstance(content, str):
                    facts.added.setdefault(content, entry["id"])
                facts._offer(entry["id"], f"tokenizer.json added token {excerpt(content, 60)}")
    if tokenizer_config is not None:
        decoder = tokenizer_config.get("added_tokens_decoder")
        for key, entry in (decoder if isinstance(decoder, dict) else {}).items():
            if not _decimal(key):
                continue
            content = _token_text(entry)
            if content is not None:
                facts.added.setdefault(content, int(key))
            source = f"tokenizer_config.json added token {excerpt(content, 60)}"
            facts._offer(int(key), source)
        facts.eos_token = _token_text(tokenizer_config.get("eos_token"))
    return facts


def vocab_unchecked(name: str, why: str) -> Finding:
    return info(
        "TOKENIZER_VOCAB_UNCHECKED",
        f"{name} {why}; the tokenizer's ids are not compared with the embedding rows.",
        name,
    )


def check_vocab(facts: TokenizerFacts, rows: int, embedding: str) -> list[Finding]:
    """TOKENIZER_VOCAB_EXCEEDS_EMBEDDINGS when some token id has no embedding row. A tokenizer
    smaller than the embedding matrix is normal (rows are padded to a multiple of 64 or 128)."""
    if facts.highest is None or facts.highest < rows:
        return []
    return [
        error(
            "TOKENIZER_VOCAB_EXCEEDS_EMBEDDINGS",
            f"The tokenizer produces token id {excerpt(facts.highest)} ({facts.highest_source}) "
            f"but {embedding} has {rows} rows (ids 0 to {rows - 1}): such tokens index past the "
            "embedding matrix and serving fails or returns garbage.",
            "tokenizer.json",
            "After adding tokens, call model.resize_token_embeddings(len(tokenizer)) before "
            "training, then save the model and its tokenizer together with save_pretrained().",
        )
    ]
