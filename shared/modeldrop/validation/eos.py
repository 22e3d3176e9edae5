"""EOS_MISMATCH: the token a chat template closes turns with is not one serving stops on.

Serving (vLLM, transformers) stops generating at the stop ids: generation_config.json
eos_token_id, config.json eos_token_id (top level or text sub-config) and the tokenizer's
eos_token. A fine-tune whose template ends turns with <|eot_id|> but whose stop ids only hold
<|end_of_text|> never stops: every answer runs to max_tokens.

The heuristic, bounded by the template size (a substring search per catalog token, no parsing
or rendering):
  1. The end-of-turn tokens of the template are the catalog's end_of_turn_tokens that occur in
     its text, and the tokenizer's eos_token when the text holds it or the `eos_token` variable.
  2. Each is resolved to an id through the added tokens (tokenizer.json added_tokens,
     tokenizer_config.json added_tokens_decoder) or tokenizer.json's vocabulary; the ones that
     do not resolve are dropped.
  3. The finding fires only when some token resolved, some stop id is known, and no resolved
     end-of-turn token is a stop id. A template with several closers (gpt-oss: <|end|> in
     history, <|return|> and <|call|> when generating) passes when one of them stops generation,
     and nothing is reported when ids cannot be resolved: no false alarms.
"""

from __future__ import annotations

import re
from typing import Any

from modeldrop.domain.findings import Finding, excerpt, warning
from modeldrop.validation.chat_template import Template
from modeldrop.validation.tokenizer_vocab import TokenizerFacts

EOS_VARIABLE = re.compile(r"\beos_token\b")
TEXT_CONFIG_KEYS = ("text_config", "llm_config", "language_config")
SHOWN = 8


def _ids(value: Any, limit: int) -> set[int]:
    """Token ids from an eos_token_id value (an int or a list of ints); anything else: none."""
    values = value[:limit] if isinstance(value, list) else [value]
    return {v for v in values if type(v) is int and 0 <= v < 2**31}


def stop_ids(
    generation_config: dict[str, Any] | None,
    config: dict[str, Any] | None,
    facts: TokenizerFacts,
    limit: int,
) -> set[int]:
    """Every id serving stops on, from the three places it is read from."""
    ids: set[int] = set()
    for document in (generation_config, config):
        if document is None:
            continue
        ids |= _ids(document.get("eos_token_id"), limit)
        for key in TEXT_CONFIG_KEYS:
            sub = document.get(key)
            if isinstance(sub, dict):
                ids |= _ids(sub.get("eos_token_id"), limit)
    if facts.eos_token is not None:
        eos = facts.token_id(facts.eos_token)
        if eos is not None:
            ids.add(eos)
    return ids


def end_of_turn_tokens(template: Template, known: list[str], facts: TokenizerFacts) -> list[str]:
    """The end-of-turn tokens the template emits (step 1 of the module's heuristic)."""
    found = [token for token in known if token in template.text]
    eos = facts.eos_token
    if eos and eos not in found and (eos in template.text or EOS_VARIABLE.search(template.text)):
        found.append(eos)
    return found


def check_eos(
    template: Template | None,
    known: list[str],
    facts: TokenizerFacts,
    stops: set[int],
    files: str,
) -> list[Finding]:
    if template is None or not stops:
        return []
    resolved = {
        token: token_id
        for token in end_of_turn_tokens(template, known, facts)
        if (token_id := facts.token_id(token)) is not None
    }
    if not resolved or any(token_id in stops for token_id in resolved.values()):
        return []
    tokens = ", ".join(f"{excerpt(t, 40)} (id {i})" for t, i in list(resolved.items())[:SHOWN])
    shown = sorted(stops)[:SHOWN]
    more = f" and {len(stops) - SHOWN} more" if len(stops) > SHOWN else ""
    return [
        warning(
            "EOS_MISMATCH",
            f"The chat template ({template.source}) ends turns with {tokens}, but serving stops "
            f"only on token ids {shown}{more} ({files}): chat answers will not stop at the end "
            "of the turn and run on to max_tokens.",
            template.file,
            "Add the end-of-turn id to eos_token_id in generation_config.json (a list may hold "
            "several ids), e.g. model.generation_config.eos_token_id = [eos_id, turn_id].",
        )
    ]
