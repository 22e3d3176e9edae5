"""A tiny Llama that answers: trained for a few seconds on CPU to memorise a few answers.

`make demo` deploys it, and the local stack's chat (the dashboard's chat box, `modeldrop chat`)
can use the same folder: `answering_model()` returns it, trained once and cached under
`.modeldrop/answering-model/KEY/tiny-llama`, KEY a hash of the questions and answers
(demo_answers.json), of this code and of the torch, transformers and tokenizers versions, so a
second call only checks that the folder is there.

The model is build_tiny_model's Llama (2 layers, hidden size 64, ChatML template, bfloat16
weights; the `family` base policy accepts it) with a byte-level BPE tokenizer whose merges come
from the answers. It is trained on exactly the tokens `transformers serve` sees for each chat
(the folder's chat template with add_generation_prompt=True), then the answer, then the EOS
token, until greedy decoding of every answer leads each runner-up token by MARGIN logits; the
saved folder is then checked by greedy generation as the server runs it. It knows these answers
and nothing else. Needs the `local-serving` extra (torch, transformers).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from modeldrop.local import tiny_model

ANSWERS_FILE = Path(__file__).with_name("demo_answers.json")
DEFAULT_CACHE = Path(".modeldrop/answering-model")
MODEL_DIR = "tiny-llama"  # the folder inside a build, uploaded as is
INFO_FILE = "training.json"  # beside the folder (never uploaded); written last: the build is done
SEED = 0
LEARNING_RATE = 1e-2
MAX_STEPS = 600  # 74 are needed today; a build that needs more than this fails loudly
TARGET_LOSS = 0.002  # mean over the answer tokens: even sampling at temperature 1 mostly holds
MARGIN = 3.0  # logits by which every answer token leads the runner-up (float32) before bf16
VERSIONED = ("torch", "transformers", "tokenizers")


class TrainingFailed(RuntimeError):
    """The tiny model did not memorise its answers (or lost them when saved)."""


@dataclass(frozen=True)
class QA:
    question: str
    answer: str


def load_answers(path: Path = ANSWERS_FILE) -> list[QA]:
    """The questions and the answers the model memorises, from a `{"answers": [{"question":
    ..., "answer": ...}]}` file."""
    document = json.loads(path.read_text(encoding="utf-8"))
    items = document.get("answers") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError(f'{path}: needs {{"answers": [{{"question": ..., "answer": ...}}]}}')
    pairs = []
    for item in items:
        fields = item if isinstance(item, dict) else {}
        question, answer = fields.get("question"), fields.get("answer")
        if not (isinstance(question, str) and question and isinstance(answer, str) and answer):
            raise ValueError(f"{path}: every answer needs a non-empty question and answer: {item}")
        pairs.append(QA(question, answer))
    if len({p.question for p in pairs}) != len(pairs):
        raise ValueError(f"{path}: a question appears twice")
    return pairs


def cache_key(answers_file: Path = ANSWERS_FILE) -> str:
    """What the trained folder depends on: the answers, this code, the libraries' versions."""
    digest = hashlib.sha256()
    for source in (answers_file, Path(__file__), Path(tiny_model.__file__)):
        digest.update(source.read_bytes())
        digest.update(b"\0")
    for name in VERSIONED:
        digest.update(f"{name}={_version(name)}\0".encode())
    return digest.hexdigest()[:16]


def find_cached(cache_dir: Path = DEFAULT_CACHE, answers_file: Path = ANSWERS_FILE) -> Path | None:
    """The cached folder for these answers and this code, None when it needs training."""
    build = cache_dir / cache_key(answers_file)
    return build / MODEL_DIR if (build / INFO_FILE).is_file() else None


def answering_model(cache_dir: Path = DEFAULT_CACHE, answers_file: Path = ANSWERS_FILE) -> Path:
    """The folder of the tiny model that answers `answers_file`'s questions: from the cache, or
    trained now (a few seconds) and cached. Raises TrainingFailed when training does not
    converge, naming the loss."""
    if cached := find_cached(cache_dir, answers_file):
        return cached
    key = cache_key(answers_file)
    build = cache_dir / key
    scratch = cache_dir / f".{key}.{os.getpid()}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        info = train(scratch / MODEL_DIR, load_answers(answers_file))
        (scratch / INFO_FILE).write_text(json.dumps({"key": key, **info}, indent=2) + "\n")
        try:
            scratch.rename(build)
        except OSError:  # another process finished the same build first: use theirs
            if not (build / INFO_FILE).is_file():
                shutil.rmtree(build, ignore_errors=True)  # a leftover without its info
                scratch.rename(build)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return build / MODEL_DIR


def training_info(folder: Path) -> dict[str, Any]:
    """What training the cached `folder` took: steps, seconds, loss, layers, questions..."""
    info: dict[str, Any] = json.loads((folder.parent / INFO_FILE).read_text())
    return info


def train(folder: Path, pairs: list[QA], max_steps: int = MAX_STEPS) -> dict[str, Any]:
    """Train the tiny Llama on `pairs` until greedy decoding reproduces every answer, save it
    into `folder` (bfloat16) and check the saved folder; what it took."""
    import torch
    from transformers.utils import logging as hf_logging

    started = time.monotonic()
    tok = tiny_model.make_tokenizer(corpus=[_chat(qa) for qa in pairs] * 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fastest for a model this small, and the same result everywhere
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            model, info = _fit(tok, pairs, max_steps, torch)
    finally:
        torch.set_num_threads(threads)
    model = model.to(torch.bfloat16)
    model.generation_config.do_sample = True  # like real chat models; temperature 0 is greedy
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # saving and loading a 260 KB folder: no bars needed
    try:
        tiny_model.save_folder(model, tok, folder)
        got = greedy_answers(folder, [qa.question for qa in pairs])
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    wrong = {qa.question: text for qa, text in zip(pairs, got, strict=True) if text != qa.answer}
    if wrong:
        raise TrainingFailed(
            f"the saved tiny model lost answers in bfloat16 (greedy decoding gave {wrong}); "
            f"raise MARGIN ({MARGIN})"
        )
    return {
        **info,
        "seconds": round(info["seconds"], 2),
        "build_seconds": round(time.monotonic() - started, 2),
        "layers": model.config.num_hidden_layers,
        "parameters": model.num_parameters(),
        "questions": [qa.question for qa in pairs],
        **{name: _version(name) for name in VERSIONED},
    }


def greedy_answers(folder: Path, questions: list[str], max_new_tokens: int = 96) -> list[str]:
    """Each question's answer by greedy decoding, loaded and prompted as `transformers serve`
    does (dtype from the weights, the folder's chat template with add_generation_prompt); an
    answer that does not end with the EOS token gets " [no EOS]" appended."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok: Any = AutoTokenizer.from_pretrained(folder)
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    answers: list[str] = []
    for question in questions:
        inputs = tok.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            out = model.generate(
                **inputs,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id,
            )
        generated = out[0, inputs["input_ids"].shape[-1] :].tolist()
        text = tok.decode(generated, skip_special_tokens=True)
        answers.append(text if generated[-1:] == [tok.eos_token_id] else f"{text} [no EOS]")
    return answers


# -- training ------------------------------------------------------------------------------
def _chat(qa: QA) -> str:
    """One chat as the template renders it, answered (the tokenizer's corpus)."""
    return (
        f"<|im_start|>user\n{qa.question}<|im_end|>\n<|im_start|>assistant\n{qa.answer}<|im_end|>\n"
    )


def _examples(tok: Any, pairs: list[QA], torch: Any) -> tuple[Any, Any, Any]:
    """input_ids, attention_mask and labels: each prompt exactly as the server tokenizes it,
    then the answer and EOS, which alone are learnt (labels -100 elsewhere)."""
    rows = []
    for qa in pairs:
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": qa.question}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
        answer = [*tok.encode(qa.answer, add_special_tokens=False), tok.eos_token_id]
        rows.append((list(prompt), answer))
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    for i, (prompt, answer) in enumerate(rows):
        seq = prompt + answer
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, len(prompt) : len(seq)] = torch.tensor(answer)
    return ids, mask, labels


def _fit(tok: Any, pairs: list[QA], max_steps: int, torch: Any) -> tuple[Any, dict[str, Any]]:
    """The float32 model, and what it took, after full-batch AdamW until TARGET_LOSS and
    MARGIN hold under teacher forcing (every answer token is the argmax, so greedy decoding
    reproduces each answer)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(
        tiny_model.model_config("llama", tok), dtype=torch.float32
    )
    ids, mask, labels = _examples(tok, pairs, torch)
    targets = labels[:, 1:]
    learnt = targets != -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    model.train()
    started = time.monotonic()
    loss_value, margin = float("inf"), float("-inf")
    for step in range(max_steps + 1):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits[learnt], targets[learnt])
        with torch.no_grad():
            scores = logits[learnt]
            wanted = targets[learnt]
            right = scores.gather(1, wanted[:, None])[:, 0]
            others = scores.scatter(1, wanted[:, None], float("-inf")).max(dim=1).values
            loss_value, margin = loss.item(), (right - others).min().item()
        if loss_value <= TARGET_LOSS and margin >= MARGIN:  # of these very weights
            model.eval()
            info = {
                "steps": step,
                "seconds": time.monotonic() - started,
                "loss": round(loss_value, 5),
                "margin": round(margin, 2),
            }
            return model, info
        if step == max_steps:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    raise TrainingFailed(
        f"the tiny model did not memorise its {len(pairs)} answers within {max_steps} steps "
        f"(loss {loss_value:.4f}, needs <= {TARGET_LOSS}; smallest logit lead {margin:.2f}, "
        f"needs >= {MARGIN})"
    )


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"
