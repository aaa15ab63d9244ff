"""robust_utils: the utility package of the book *Robust Neural Networks at Inference*.

One module per concern; each public function names the chapter that teaches it. Shared input
checks live in ``robust_utils._checks``; registries that chapters add to (architectures,
activations, trainers, recipe sets) in ``robust_utils._registry``.

- :mod:`robust_utils.config`: profiles (smoke / laptop / full), devices, seeds, paths.
- :mod:`robust_utils.data`: Fashion-MNIST, MNIST and CIFAR-10 loaders, normalisation, class subsets.
- :mod:`robust_utils.novel`: the novel-data suite (corruptions, OOD sets, new classes).
- :mod:`robust_utils.corruptions`: the corruption types and severity levels.
- :mod:`robust_utils.models`: the classifiers (C3LT CNN, MLP, pre-activation ResNet, TRADES CNN, strided CNN).
- :mod:`robust_utils.training`: the training loop and batched prediction.
- :mod:`robust_utils.recipes`: how a model is made (recipes, keys) and each chapter's recipe set.
- :mod:`robust_utils.checkpoints`: safetensors checkpoints, verified, committed atomically, locked.
- :mod:`robust_utils.cache`: the trained-model cache: load or train by recipe, list, pre-build.
- :mod:`robust_utils.gradients`: per-sample gradients, Fisher information, gradient surprise.
- :mod:`robust_utils.features`: penultimate features and 2-D embeddings.
- :mod:`robust_utils.metrics`: accuracy and detection metrics.
- :mod:`robust_utils.calibration`: expected calibration error and reliability diagrams.
- :mod:`robust_utils.explanations`: gradients, Guided Backprop, the Grad-CAM family.
- :mod:`robust_utils.sanity`: the layer-randomisation sanity check of explanations.
- :mod:`robust_utils.introspection`: introspective learning (gradient features + a second stage).
- :mod:`robust_utils.uncertainty`: entropy decomposition, MC dropout, ensembles, confidence gap.
- :mod:`robust_utils.ood`: single-pass scores: Mahalanobis distance and the logit baselines.
- :mod:`robust_utils.gradtrust`: GradTrust and the trust curves (AUAC, AUFC).
- :mod:`robust_utils.regression_toy`: the 1-D mean-variance ensemble (aleatoric vs epistemic).
- :mod:`robust_utils.detection`: gradient ("purview") features, the detector of novel inputs, detection rows.
- :mod:`robust_utils.attacks`: FGSM and PGD adversarial examples.
- :mod:`robust_utils.robust_objectives`: the inner maximisation and risks of PGD-AT, TRADES, MART, WRM and UDR.
- :mod:`robust_utils.robust_training`: one training loop for Part 5's robust objectives, and its recipe set.
- :mod:`robust_utils.robust_eval`: AutoAttack, Brendel-Bethge, robust accuracy curves, Wilson intervals, McNemar.
- :mod:`robust_utils.robust_toy`: the two-moons networks of Part 5.
- :mod:`robust_utils.transport`: optimal transport and distributional robustness on a grid.
- :mod:`robust_utils.lipschitz`: the half-Huber ReLU and the Lipschitz regulariser of eq. (4).
- :mod:`robust_utils.lipschitz_training`: eq. (4), L2 and L2,min adversarial training, Part 6's recipe set.
- :mod:`robust_utils.adv_explain`: Algorithm 1 (minimal adversarials, adversarial explanations), the ARA protocol.
- :mod:`robust_utils.ara`: the accuracy-robustness area of a list of minimal perturbations.
- :mod:`robust_utils.c3lt`: C3LT's latent maps g and h, its four losses, training and inference (Part 7).
- :mod:`robust_utils.cf_metrics`: counterfactual metrics: validity, proximity, COUT, IM1/IM2, FID/KID (Part 7).
- :mod:`robust_utils.generative`: the DCGAN generator, discriminator and latent encoder behind C3LT (Part 7).
- :mod:`robust_utils.interventions`: heatmap masking, pixel-wise insertion/deletion, occlusion, energy inside.
- :mod:`robust_utils.structure`: Huffman coding and structure-wise insertion/deletion.
- :mod:`robust_utils.rise`: RISE and SHAPE, explanations from random masks.
- :mod:`robust_utils.voice`: VOICE, the uncertainty of contrastive explanations.
- :mod:`robust_utils.privacy`: membership inference with shadow models.
- :mod:`robust_utils.benchmarking`: corruption benchmark, CE and mCE.
- :mod:`robust_utils.plotting`: figures.
- :mod:`robust_utils.tables`: HTML tables for the rendered book.
- :mod:`robust_utils.claims`: a chapter's claims, with verdicts computed by stated rules.
- :mod:`robust_utils.narrate`: outcome sentences generated from the run's numbers.
- :mod:`robust_utils.interactive`: widget explorers that draw once under the runner.
- :mod:`robust_utils.runner`: executes the notebooks with papermill.
- :mod:`robust_utils.render`: cleans executed copies and adds the run banner.
- :mod:`robust_utils.scoreboard`: the Conclusions' reproduction scoreboard.
"""
__version__ = "0.1.0"
