"""`demo`: the whole introspection pipeline on a few questions, for `metalens demo`."""
from __future__ import annotations

from pathlib import Path

from metalens.introspect.workflows.eval import EvalConfig, run_eval
from metalens.introspect.workflows.sample import SampleConfig, run_sample
from metalens.introspect.workflows.train import TrainConfig, run_train


def demo(model=None, out="runs/introspect/demo", n_questions: int = 16, n_samples: int = 4) -> dict:
    """A small end-to-end run (rollouts, head, eval, sampler) on gemma-3-270m; about 2 CPU minutes.

    Returns headline numbers (and `headline`, one line of them). Too few questions for trustworthy
    numbers: it shows the pipeline, not a result.
    """
    import metalens

    model = model or metalens.load_model("gemma-3-270m")
    out = Path(out)
    # Level 1 at low temperature: gemma-3-270m solves ~20 % of it, so both rewards occur.
    train = run_train(model, TrainConfig(n_questions=n_questions, levels=(1,), n_samples=n_samples,
                                         max_new_tokens=24, temperature=0.3, steps=100, test_fraction=0.5),
                      out=out, progress=False)
    evaluation = run_eval(model, EvalConfig(train, fractions=(0.0, 0.5, 1.0), verbal=False),
                          out=out / "eval", progress=False)
    sampling = run_sample(model, SampleConfig(train), out=out / "sample", progress=False)
    solve = sum(train.solve_rates.values()) / len(train.solve_rates)
    # One fixed operating point (not the best of the sweep): alpha = 1e-3, one sample to start.
    point = next(r for r in sampling.matched if r["method"] == "adaptive (start 1)" and r["alpha"] == 1e-3)
    shuffled = evaluation.all_positions["shuffled"]["auroc"]
    headline = (f"solve rate {solve:.2f}; held-out reward AUROC {evaluation.heldout_auroc:.2f} (shuffled labels "
                f"{shuffled:.2f}); adaptive sampler {point['accuracy']:.2f} at {point['tokens']:.0f} tokens vs "
                f"majority {point['majority_at_same_tokens']:.2f}")
    return {"headline": headline, "solve_rate": solve, "heldout_auroc": evaluation.heldout_auroc,
            "shuffled_auroc": shuffled, "adaptive_accuracy": point["accuracy"], "adaptive_tokens": point["tokens"],
            "majority_accuracy_same_tokens": point["majority_at_same_tokens"], "solve_rates": train.solve_rates,
            "fractions": evaluation.fractions, "matched": sampling.matched}
