"""GENNAPE (Mills et al., AAAI 2023): a transferable performance predictor, in parts.

* :mod:`~napbench.zoo.gennape.encoder` -- contrastive graph encoder and its spectral-weighted loss;
* :mod:`~napbench.zoo.gennape.fcm` -- Fuzzy C-Means (scikit-fuzzy) and fixed-centroid memberships;
* :mod:`~napbench.zoo.gennape.transforms` -- per-family and FLOPs label transforms;
* :mod:`~napbench.zoo.gennape.heads` -- per-cluster MLP heads, pairwise comparator, merge-sort ranking;
* :mod:`~napbench.zoo.gennape.predictors` -- the ablation predictors ``gennape:cl``, ``gennape:cl+t``,
  ``gennape:cl+fcm+t``, ``gennape:cl+pairwise``, ``gennape:cl+fcm+pairwise``;
* :mod:`~napbench.zoo.gennape.ensemble` -- ``gennape``: the ensemble with an uncertainty;
* :mod:`~napbench.zoo.gennape.training` -- ``train_default``: the default checkpoint.
"""
