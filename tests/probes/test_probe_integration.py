"""Real gemma-3-270m: the shipped moral set is linearly decodable at a middle layer, scored on
actions the probe never saw (group-aware CV: no action's time frames on both sides)."""
import pytest

from metalens.probes import load_dataset, sweep_layers


@pytest.mark.integration
def test_gemma_middle_layer_separates_acceptable_from_unacceptable_actions(gemma):
    ds = load_dataset("moral").subset(range(96))
    sweep = sweep_layers(gemma, ds.texts, ds.labels, [6], cv=4, groups=ds.groups)
    assert sweep.probes[0].metadata["grouped"]
    assert sweep.probes[0].cv_accuracy > 0.75  # chance is 0.5 on this balanced subset
