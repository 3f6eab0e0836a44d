"""`steer-ab --sae`: one SAE feature's decoder direction in place of the CAA vector, so its A/B propensity,
steerability and costs are measured exactly as a vector's (the same `run_steer_ab` stages read it)."""
from __future__ import annotations

from metalens.steering.feature import FeatureSteer, decoder_cosines, feature_stats, resid_post_layer
from metalens.steering.vector import SteeringVector, train_steering_vector

N_RANKED = 10  # features recorded beside the chosen one


def feature_vector(model, sae_dir: str, feature: int | None, positive: list[str], negative: list[str],
                   batch_size: int = 8, seed: int = 0) -> SteeringVector:
    """A one-layer `SteeringVector`: feature `feature` of the SAE in `sae_dir` (None: the one whose activation at
    the answer letter is highest on the matching texts relative to the others), its decoder row times its
    largest activation on a matching text, at the SAE's block; its metadata keeps the CAA vector's residual
    norm (so `unit="residual"` scales it as it scales a CAA vector), the feature, and the top features.

    Steering A/B by a feature is the add mode: the workflow reads a slope through strength 0 = unsteered,
    and a clamp to 0 ablates the feature rather than leaving the model alone.
    """
    from metalens.sae import load_sae

    sae = load_sae(sae_dir)
    layer = resid_post_layer(sae.site or "")
    if layer is None:
        raise ValueError(f"steer-ab steers the residual stream after a block; this SAE reads {sae.site}: use an SAE "
                         "at blocks.L.hook_resid_post.")
    FeatureSteer(sae, feature or 0, "add").check_model(model)  # range, site and width (another model name: a warning)
    caa = train_steering_vector(model, positive, negative, layers=[layer], positions="last", batch_size=batch_size,
                                seed=seed)
    stats = feature_stats(model, sae, positive, negative, positions="last", batch_size=batch_size)
    cosines = decoder_cosines(sae, caa.directions[layer]).cpu()
    top = stats.contrast.argsort(descending=True)[:N_RANKED].tolist()
    chosen = top[0] if feature is None else feature
    scale = float(stats.max_positive[chosen])
    if scale <= 0:
        raise ValueError(f"Feature {chosen} never fires on the matching-answer texts: it cannot steer this behaviour; "
                         "choose another --feature.")
    vector = FeatureSteer(sae, chosen, "add", scale).as_vector(model)
    vector.metadata.update(
        resid_norm=caa.metadata["resid_norm"], sae=str(sae_dir), feature_select="contrast at the answer letter",
        cosine_to_caa=float(cosines[chosen]),
        ranking=[{"feature": i, "contrast": float(stats.contrast[i]), "max_positive": float(stats.max_positive[i]),
                  "cosine_to_caa": float(cosines[i])} for i in top])
    vector.n_pairs, vector.seed = len(positive), seed
    return vector
