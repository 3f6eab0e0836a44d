"""A/B behaviour steering: two-choice items -> CAA vector -> judge-free propensity per layer x strength.

`run_steer_ab(model, SteerABConfig(data))` -> `SteerABResult` is the workflow (`metalens steer-ab`);
`items` reads, splits and balances the items and reads the answer letters' logit difference;
`costs` measures neutral-text loss and the strength range a cost bound allows; `report` draws it;
`planted` and `sensitivity` plant a steerable behaviour and measure the workflow's detection curve.
"""
from metalens.steering.ab.costs import loss_changes, neutral_loss, strength_range
from metalens.steering.ab.items import (ABItem, answer_prefix, balance, caa_pairs, flips, letter_logprobs, propensity,
                                        read_ab, response_start, slopes, split_items, steerability, strip_choices,
                                        swap_choices)
from metalens.steering.ab.planted import PlantedSteerable
from metalens.steering.ab.report import propensity_figure
from metalens.steering.ab.sensitivity import SteerABSensitivityConfig, run_steer_ab_sensitivity
from metalens.steering.ab.workflow import SteerABConfig, SteerABResult, choose_layer, run_steer_ab, slope_record

__all__ = [
    "ABItem", "PlantedSteerable", "SteerABConfig", "SteerABSensitivityConfig", "SteerABResult", "answer_prefix",
    "balance", "caa_pairs", "choose_layer", "flips", "letter_logprobs", "loss_changes", "neutral_loss",
    "propensity", "propensity_figure", "read_ab", "response_start", "run_steer_ab", "run_steer_ab_sensitivity",
    "slope_record", "slopes", "split_items", "steerability", "strength_range", "strip_choices", "swap_choices",
]
