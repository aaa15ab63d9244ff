"""robust_utils: the utility package of the book *Robust Neural Networks at Inference*.

One module per concern; each public function names the chapter that teaches it.

- :mod:`robust_utils.config`: profiles (smoke / laptop / full), devices, seeds, paths.
- :mod:`robust_utils.data`: Fashion-MNIST and the novel-data suite (corruptions, OOD, new classes).
- :mod:`robust_utils.corruptions`: the corruption types and severity levels.
- :mod:`robust_utils.models`: the classifiers (C3LT CNN, MLP, pre-activation ResNet).
- :mod:`robust_utils.training`: the training loop and batched prediction.
- :mod:`robust_utils.cache`: the trained-model cache (recipes, safe checkpoints).
- :mod:`robust_utils.gradients`: per-sample gradients, Fisher information, gradient surprise.
- :mod:`robust_utils.features`: penultimate features and 2-D embeddings.
- :mod:`robust_utils.metrics`: accuracy and detection metrics.
- :mod:`robust_utils.calibration`: expected calibration error and reliability diagrams.
- :mod:`robust_utils.explanations`: gradients, Guided Backprop, the Grad-CAM family.
- :mod:`robust_utils.introspection`: introspective learning (gradient features + a second stage).
- :mod:`robust_utils.uncertainty`: MC dropout, ensembles, Mahalanobis, baselines, GradTrust.
- :mod:`robust_utils.detection`: gradient ("purview") features and the detector of novel inputs.
- :mod:`robust_utils.attacks`: FGSM and PGD adversarial examples.
- :mod:`robust_utils.interventions`: masking evaluations (heatmap, pixel- and structure-wise), RISE, SHAPE.
- :mod:`robust_utils.voice`: VOICE, the uncertainty of contrastive explanations.
- :mod:`robust_utils.privacy`: membership inference with shadow models.
- :mod:`robust_utils.benchmarking`: corruption benchmark, CE and mCE.
- :mod:`robust_utils.plotting`: figures.
- :mod:`robust_utils.runner`: executes the notebooks with papermill.
"""
__version__ = "0.1.0"
