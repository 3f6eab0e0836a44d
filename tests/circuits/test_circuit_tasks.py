"""Task generators: equal-length pairs whose answers differ, JSONL round trip."""
import pytest

from metalens.circuits import make_task
from metalens.circuits.tasks import answer_token, arithmetic_task, induction_task, load_task


@pytest.mark.parametrize("name", ["arithmetic", "word", "induction"])
def test_generated_pairs_have_equal_lengths_and_different_answer_tokens(tiny_gemma, name):
    tok = tiny_gemma.tokenizer
    task = make_task(name, tok, n=6)
    for c, x, a, w in zip(task.clean, task.corrupted, task.answers, task.wrong):
        assert len(tok(c)["input_ids"]) == len(tok(x)["input_ids"])
        assert answer_token(tok, c, a) != answer_token(tok, x, w)


def test_arithmetic_prompt_ends_at_the_final_step():
    from metalens.testing import tiny_tokenizer

    task = arithmetic_task(tiny_tokenizer(), n=8, levels=(3,))
    for prompt, answer in zip(task.clean, task.answers):
        assert prompt.endswith(" = ") and prompt.count("=") == 2  # one worked step, then the last one
        assert str(eval(prompt.split("is ")[1].split("?")[0])) == answer


def test_induction_answer_is_the_token_after_the_earlier_copy(tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=4, seq_len=8)
    for clean, corrupted, a, w in zip(task.clean, task.corrupted, task.answers, task.wrong):
        head, tail = clean[:8], clean[8:]
        assert head.startswith(tail) and head[len(tail)] == a
        assert corrupted[len(tail)] == w and corrupted[8:] == tail


def test_task_jsonl_round_trip(tmp_path, tiny_gemma):
    task = induction_task(tiny_gemma.tokenizer, n=3)
    task.save_jsonl(tmp_path / "pairs.jsonl")
    back = load_task(tmp_path / "pairs.jsonl", metric="logprob")
    assert back.clean == task.clean and back.wrong == task.wrong and back.metric == "logprob"


def test_unknown_task_names_the_choices(tiny_gemma):
    with pytest.raises(ValueError, match="arithmetic, word, induction, factual"):
        make_task("sums", tiny_gemma.tokenizer)
