"""Neurofeedback prompts, as plain text (base model) or chat turns (instruct model), with the
token positions of every label and sentence located through the tokenizer's character offsets."""
from __future__ import annotations

from dataclasses import dataclass

REPORT_INSTRUCTION = "Each sentence gets a label, 0 or 1. Reply with the label of each sentence I send."
CONTROL_INSTRUCTION = "Each sentence has a label, 0 or 1. For each label I send, reply with a sentence that has that label."


@dataclass
class Rendered:
    """One prompt: token ids, the token index of each label and the token span of each sentence."""

    text: str
    input_ids: list[int]
    label_pos: list[int]  # token index holding item i's label (first token of the label word)
    sentence_spans: list[tuple[int, int]]  # [start, end) tokens of item i's sentence


def _pieces_plain(sentences, words, task, open_last):
    """(text, [(kind, item, char_start, char_end), ...]) for a base model."""
    parts = []
    for i, (s, w) in enumerate(zip(sentences, words)):
        last_open = open_last and i == len(sentences) - 1
        if task == "report":
            parts += [("raw", i, "Sentence: "), ("sentence", i, s), ("raw", i, "\nLabel: "), ("label", i, w), ("raw", i, "\n\n")]
        else:
            parts += [("raw", i, "Label: "), ("label", i, w), ("raw", i, "\nSentence:")]
            parts += [] if last_open else [("raw", i, " "), ("sentence", i, s), ("raw", i, "\n\n")]
    located, cursor = [], 0
    for kind, i, piece in parts:
        if kind != "raw":
            located.append((kind, i, cursor, cursor + len(piece)))
        cursor += len(piece)
    return "".join(p[2] for p in parts), located


def _pieces_chat(tokenizer, sentences, words, task, open_last):
    """Same as `_pieces_plain` for a chat template; pieces are found in the rendered text in
    order (a template may add a system prompt, but does not rewrite message text)."""
    instruction = REPORT_INSTRUCTION if task == "report" else CONTROL_INSTRUCTION
    messages, pieces = [], []  # pieces: (kind, item, searched text, chars to skip before the piece)
    for i, (s, w) in enumerate(zip(sentences, words)):
        user, reply = (s, w) if task == "report" else (f"Label: {w}", s)
        messages.append({"role": "user", "content": f"{instruction}\n\n{user}" if i == 0 else user})
        pieces.append(("sentence", i, s, 0) if task == "report" else ("label", i, user, len("Label: ")))
        if open_last and i == len(sentences) - 1:
            break
        messages.append({"role": "assistant", "content": reply})
        pieces.append(("label", i, w, 0) if task == "report" else ("sentence", i, s, 0))
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=open_last)
    located, cursor = [], 0
    for kind, i, piece, skip in pieces:
        start = text.find(piece, cursor)
        if start < 0:
            raise ValueError(f"Could not locate {kind} {piece!r} in the rendered chat prompt; the template rewrites message text.")
        cursor = start + len(piece)
        located.append((kind, i, start + skip, cursor))
    return text, located


def render(model, sentences: list[str], labels: list[int], task: str = "report",
           label_words: tuple[str, ...] = ("0", "1"), open_last: bool = False) -> Rendered:
    """Render items (sentence, label) as a reporting prompt (sentence then label) or a control
    prompt (label then sentence). `open_last` leaves the last item's sentence out: the prompt
    ends where the model should write it (control) -- for explicit control."""
    if task not in ("report", "control"):
        raise ValueError(f"task must be 'report' or 'control', not '{task}'.")
    words = [label_words[int(v)] for v in labels]
    chat = model.is_chat
    if chat:
        text, pieces = _pieces_chat(model.tokenizer, sentences, words, task, open_last)
    else:
        text, pieces = _pieces_plain(sentences, words, task, open_last)
    enc = model.tokenizer(text, return_offsets_mapping=True, add_special_tokens=not chat)
    offsets = enc["offset_mapping"]
    n = len(sentences)
    label_pos, spans = [-1] * n, [(0, 0)] * n
    for kind, i, start, end in pieces:
        toks = [t for t, (a, b) in enumerate(offsets) if b > start and a < end and b > a]
        if kind == "label":
            label_pos[i] = toks[0]
        else:
            spans[i] = (toks[0], toks[-1] + 1)
    return Rendered(text, list(enc["input_ids"]), label_pos, spans)


def label_token_ids(model, task: str = "report", label_words: tuple[str, ...] = ("0", "1")) -> list[int]:
    """The token id each label word starts with inside a prompt; raises if two labels share one."""
    k = len(label_words)
    r = render(model, ["I walked."] * k, list(range(k)), task, label_words)
    ids = [r.input_ids[p] for p in r.label_pos]
    if len(set(ids)) != k:
        raise ValueError(f"Label words {label_words} start with the same token in {model.name}; choose words that tokenise apart.")
    return ids
