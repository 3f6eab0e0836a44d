"""A/B behaviour steering: two-choice items -> CAA vector -> judge-free propensity per layer x strength.

`run_steer_ab(model, SteerABConfig(data))` -> `SteerABResult` is the workflow (`metalens steer-ab`);
`items` reads, splits and balances the items and reads the answer letters' probabilities.
"""
from metalens.steering.ab.items import (ABItem, answer_prefix, balance, caa_pairs, flips, letter_logprobs, propensity,
                                        read_ab, slopes, split_items, steerability, strip_choices, swap_choices)
from metalens.steering.ab.workflow import (SteerABConfig, SteerABResult, choose_layer, neutral_loss, propensity_figure,
                                           run_steer_ab)

__all__ = [
    "ABItem", "SteerABConfig", "SteerABResult", "answer_prefix", "balance", "caa_pairs", "choose_layer", "flips",
    "letter_logprobs", "neutral_loss", "propensity", "propensity_figure", "read_ab", "run_steer_ab", "slopes",
    "split_items", "steerability", "strip_choices", "swap_choices",
]
