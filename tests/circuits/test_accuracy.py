"""Generated-answer accuracy: one-line completions from the core's generate, graded by tasks.arithmetic."""
import metalens
from metalens import sites
from metalens.circuits.accuracy import generation_accuracy, last_number
from metalens.tasks.arithmetic import make_problems


def test_completions_end_at_the_first_newline_and_leave_the_tokenizer_alone(tiny_llama):
    tok = tiny_llama.tokenizer
    newline = tiny_llama.hf.get_output_embeddings().weight[tok.convert_tokens_to_ids("\n")].detach()

    def always_newline(hidden):  # the tied unembedding then ranks "\n" first at every step
        return (0 * hidden + 100 * newline / newline.norm()).to(hidden.dtype)

    side = tok.padding_side
    with metalens.hooks(tiny_llama, {sites.FINAL_NORM: always_newline}):
        result = generation_accuracy(tiny_llama, make_problems(3), max_new_tokens=5)
    assert result["completions"] == ["", "", ""] and result["accuracy"] == 0 and result["n"] == 3
    assert tok.padding_side == side


def test_lenient_grading_reads_the_last_number():
    assert last_number("5 + 9 = 14") == 14 and last_number("no digits") is None
