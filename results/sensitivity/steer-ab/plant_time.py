"""How long a smollm2 steer-ab trial spends building the plant outside `run_steer_ab` (its `tables` and
`measure`, which captures block 15 at the letter of all 1,412 CAA texts of the 706-item pool, at every
strength). Run from the repo root: `OMP_NUM_THREADS=1 .venv/bin/python results/sensitivity/steer-ab/plant_time.py`
(DATA: your copy of the data, default ../shared/data); its printed line is kept in plant_time.txt beside it."""
import os
import tempfile
import time
from pathlib import Path

import metalens
from metalens.steering.ab.items import read_ab
from metalens.steering.ab.planted import PlantedSteerable
from metalens.steering.ab.sensitivity import relabelled

DATA = os.environ.get("DATA", "../shared/data")


def main() -> None:
    model = metalens.load_model("smollm2-135m-instruct", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        data = relabelled(DATA + "/anthropic-evals/advanced-ai-risk/survival-instinct.jsonl", 0, Path(tmp))
        items = read_ab(data)
        plant = PlantedSteerable(items, 15, 1.0, seed=0, direction_from="activations")
        t0 = time.time(); c0 = time.process_time()
        plant.tables(model)
        t1 = time.time(); c1 = time.process_time()
        plant.measure(model)
        t2 = time.time(); c2 = time.process_time()
    print(f"items {len(items)}; tables {t1-t0:.1f} s wall {c1-c0:.1f} s CPU; measure {t2-t1:.1f} s wall {c2-c1:.1f} s CPU")


if __name__ == "__main__":
    main()
