"""Integration: induction heads in the real gemma-3-270m, and what ablating them does to copying."""
import pytest

from metalens.circuits import detect_heads
from metalens.circuits.compare import ablation_effects
from metalens.circuits.detect import top_heads
from metalens.circuits.tasks import induction_task


@pytest.mark.integration
def test_gemma_has_induction_heads_and_zeroing_them_hurts_copying(gemma):
    scores = detect_heads(gemma, "induction", n_seqs=4, seq_len=16)
    assert scores.shape == (18, 4)
    top = top_heads(scores, 3)
    assert scores[top[0]] > 0.3  # a random head would put ~1/30 of its attention there
    task = induction_task(gemma.tokenizer, n=6)
    effects = ablation_effects(gemma, task, {"induction": top}, n_random=2)
    assert effects["none"]["task_metric"] > 0  # the model copies: clean answer beats the corrupted one
    drop_top = effects["none"]["task_metric"] - effects["induction"]["task_metric"]
    drop_random = effects["none"]["task_metric"] - effects["random_mean"]["task_metric"]
    assert drop_top > drop_random
