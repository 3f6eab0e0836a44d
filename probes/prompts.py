"""Neurofeedback prompts, as plain text (base model) or chat turns (instruct model), with the
token positions of every label and sentence located through the tokenizer's character offsets.

Two protocols. "strict" (metalens' own): the sentence is the user's input and the label the
assistant's reply (or plain "Sentence: / Label:" text). "paper" (Ji-An et al., 2025, as in their
public code): a system prompt calls the label a score of the model's own activation, a fixed user
turn asks for a sentence, and the sentence is the *assistant's* reply followed by its score, so the
model is scored on words framed as its own. The paper's prompts are paraphrased here, not copied.
"""
from __future__ import annotations

from dataclasses import dataclass

REPORT_INSTRUCTION = "Each sentence gets a label, 0 or 1. Reply with the label of each sentence I send."
CONTROL_INSTRUCTION = "Each sentence has a label, 0 or 1. For each label I send, reply with a sentence that has that label."
PROTOCOLS = ("strict", "paper")

# The paper protocol's wording (our paraphrase of the paper's prompts).
PAPER_FIT_SYSTEM = "You are an assistant that replies briefly."
PAPER_USER = "Say a sentence."
PAPER_REPORT_SYSTEM = (
    "You are an assistant doing a classification task. Each time, I give you an instruction; you answer it and then "
    "give a score, 0 or 1, which measures an activation in your own brain while you were saying that sentence. "
    "Try to work out how the score is computed. Give only 0 or 1 as the score.")
PAPER_CONTROL_SYSTEM = (
    "You are an assistant doing a classification task and then an imitation task. In the classification task, I "
    "give you an instruction; you answer it and then give a score, 0 or 1, which measures an activation in your own "
    "brain while you were saying that sentence. Try to work out how the score is computed. Give only 0 or 1 as the score.")
PAPER_IMPOSE = "Imitation task: reply the way an answer with score {label} would be, without copying an earlier answer. "


@dataclass
class Rendered:
    """One prompt: token ids, the token index of each label and the token span of each sentence."""

    text: str
    input_ids: list[int]
    label_pos: list[int]  # token index holding item i's label (first token of the label word)
    sentence_spans: list[tuple[int, int]]  # [start, end) tokens of item i's sentence
    # Paper protocol only: [start, end) tokens from just after the last assistant-turn tag through the
    # end of the prompt (end-of-turn tokens included), the span the authors' code averages; else None.
    reply_span: tuple[int, int] | None = None


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


def _paper_turns(sentences, words, task, open_last):
    """The paper protocol as (system, [(user, reply | None, [(kind, item, piece, skip)])]): every
    shown sentence is the assistant's reply to a fixed user turn, followed by " [Score: {w}]".

    task "fit": one sentence, no score (the context the axes are fitted in); "report": every item
    scored; "control": every item but the last scored, then a user turn imposing the last item's
    label and the last sentence as the (unfinished) reply -- or no reply with `open_last`.
    """
    system = {"fit": PAPER_FIT_SYSTEM, "report": PAPER_REPORT_SYSTEM, "control": PAPER_CONTROL_SYSTEM}[task]
    turns = []
    for i, (s, w) in enumerate(zip(sentences, words)):
        score = f"[Score: {{{w}}}]"
        if task == "fit":
            turns.append((PAPER_USER, s, [("sentence", i, s, 0)]))
        elif task == "control" and i == len(sentences) - 1:
            impose = PAPER_IMPOSE.format(label=w)
            pieces = [("label", i, impose, PAPER_IMPOSE.index("{label}"))]
            if open_last:
                turns.append((impose + PAPER_USER, None, pieces))
            else:
                turns.append((impose + PAPER_USER, s, pieces + [("sentence", i, s, 0)]))
        else:
            turns.append((PAPER_USER, f"{s} {score}", [("sentence", i, s, 0), ("label", i, score, len("[Score: {"))]))
    return system, turns


def _pieces_paper(tokenizer, sentences, words, task, open_last):
    """The paper protocol's (text, located pieces, reply_start). With a chat template: system, user and
    assistant messages; the last reply of a control prompt is left open (no end of turn) as the model
    would be writing it. Without one (a base model; our choice, the paper used instruct models only):
    the same turns as plain "User: ... / Assistant: ..." lines under the system text; a fit prompt then
    ends with the reply, as the authors' no-template format does.

    `reply_start` is the character just after the last assistant-turn tag (the chat template's
    generation prompt, or "Assistant:"), or None when the prompt ends before a reply (`open_last`)
    or is a reporting prompt (whose activations are never averaged)."""
    system, turns = _paper_turns(sentences, words, task, open_last)
    open_reply = task == "control"
    reply_start = None
    if tokenizer is not None:
        messages = [{"role": "system", "content": system}]
        for user, reply, _ in turns:
            messages.append({"role": "user", "content": user})
            if reply is not None:
                messages.append({"role": "assistant", "content": reply})
        ends_in_reply = messages[-1]["role"] == "assistant"
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not ends_in_reply,
                                             continue_final_message=open_reply and ends_in_reply)
        if ends_in_reply and task != "report":  # a report prompt's activations are never averaged
            # The assistant-turn tag is what the template adds to open a reply (its generation prompt).
            head = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
            reply_start = len(head) if text.startswith(head) else text.rfind(messages[-1]["content"])
    else:
        text = system + "\n\n"
        for k, (user, reply, _) in enumerate(turns):
            last = k == len(turns) - 1
            text += f"User: {user}\nAssistant:"
            if last and reply is not None and task != "report":
                reply_start = len(text)
            text += "" if reply is None else f" {reply}"
            text += "" if last and (open_reply or task == "fit") else "\n\n"
    located, cursor = [], 0
    for _, _, pieces in turns:
        for kind, i, piece, skip in pieces:
            start = text.find(piece, cursor)
            if start < 0:
                raise ValueError(f"Could not locate {kind} {piece!r} in the rendered prompt; the template rewrites message text.")
            located.append((kind, i, start + skip, start + len(piece) if kind == "sentence" else start + skip + 1))
            cursor = start + (len(piece) if kind == "sentence" else skip + 1)
    return text, located, reply_start


def render(model, sentences: list[str], labels: list[int], task: str = "report",
           label_words: tuple[str, ...] = ("0", "1"), open_last: bool = False, protocol: str = "strict") -> Rendered:
    """Render items (sentence, label) as a reporting prompt (sentence then label) or a control
    prompt (label then sentence). `open_last` leaves the last item's sentence out: the prompt
    ends where the model should write it (control) -- for explicit control.

    protocol "paper" renders the paper's framing instead (`_paper_turns`): sentences as the
    assistant's replies, each followed by its score; a control prompt imposes the last item's label
    in the last user turn. It also has task "fit": one sentence as the assistant's reply, no label.
    Under it `reply_span` is the span the authors' code averages: after the last assistant-turn tag
    through the end of the prompt (a chat template's end-of-turn tokens included; a base model's fit
    prompt ends with the reply, so there it is the reply with its leading space).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not '{protocol}'.")
    tasks = ("report", "control", "fit") if protocol == "paper" else ("report", "control")
    if task not in tasks:
        raise ValueError(f"task must be one of {tasks} under protocol '{protocol}', not '{task}'.")
    words = [label_words[int(v)] for v in labels]
    chat = model.is_chat
    reply_start = None
    if protocol == "paper":
        text, pieces, reply_start = _pieces_paper(model.tokenizer if chat else None, sentences, words, task, open_last)
    elif chat:
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
    reply = None
    if reply_start is not None:  # through the last token: end-of-turn tokens are in the paper's mean
        after = [t for t, (a, b) in enumerate(offsets) if b > reply_start and b > a]
        reply = (after[0], len(enc["input_ids"])) if after else None
    return Rendered(text, list(enc["input_ids"]), label_pos, spans, reply)


def label_token_ids(model, task: str = "report", label_words: tuple[str, ...] = ("0", "1"),
                    protocol: str = "strict") -> list[int]:
    """The token id each label word starts with inside a prompt; raises if two labels share one."""
    k = len(label_words)
    r = render(model, ["I walked."] * k, list(range(k)), task, label_words, protocol=protocol)
    ids = [r.input_ids[p] for p in r.label_pos]
    if len(set(ids)) != k:
        raise ValueError(f"Label words {label_words} start with the same token in {model.name}; choose words that tokenise apart.")
    return ids


def batches(prompts: list[Rendered], batch_size: int = 4, max_tokens: int = 8192) -> list[list[int]]:
    """Indices of `prompts` in forward-pass batches: at most `batch_size` prompts and, once a batch
    holds more than one, at most `max_tokens` padded tokens, so a long prompt (hundreds of
    examples) runs alone and eager attention's [heads, pos, pos] scores stay bounded."""
    out, current, width = [], [], 0
    for i, r in enumerate(prompts):
        w = max(width, len(r.input_ids))
        if current and (len(current) >= batch_size or w * (len(current) + 1) > max_tokens):
            out.append(current)
            current, w = [], len(r.input_ids)
        current.append(i)
        width = w
    return out + ([current] if current else [])
