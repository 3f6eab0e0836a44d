"""Generated-answer accuracy: one-line completions from the core's generate, graded by tasks.arithmetic."""
import metalens
from metalens import sites
from metalens.tasks import generation_accuracy
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


def test_accuracy_comes_with_a_wilson_interval_and_per_problem_grades(tiny_llama):
    problems = make_problems(4)
    result = generation_accuracy(tiny_llama, problems, max_new_tokens=3)
    assert len(result["correct"]) == 4 and result["accuracy"] == sum(result["correct"]) / 4
    assert 0 <= result["low"] <= result["accuracy"] <= result["high"] <= 1 and result["high"] > 0
    assert "lenient_accuracy" not in result  # the arithmetic grader already reads the last number
