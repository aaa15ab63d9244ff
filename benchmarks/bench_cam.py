"""Benchmark: our batched CAMs vs captum and pytorch-grad-cam on Fashion-MNIST (CPU).

Times Grad-CAM, ContrastCAM and Grad-CAM++ of :mod:`robust_utils.explanations` on ``--n``
Fashion-MNIST test images with the C3LT classifier, against captum's ``LayerGradCam`` and
pytorch-grad-cam's ``GradCAM`` / ``GradCAMPlusPlus`` in the same run. Every method gets the same
batches (``--batch-size``), the same layer, the same target classes, and produces the same
output: ReLU'd maps upsampled (bilinear) to 28x28 and min-max normalised per image. After one
warm-up pass, the methods of a row are timed in interleaved rounds (each method once per round),
and a method's time is its best of ``--repeats`` passes over all images. The script also prints
the largest difference between our maps and each reference's, so a fast but wrong method cannot
pass.

ContrastCAM is not in either library; for it, the references are given the same backward signal
(the cross-entropy between the logits and the contrast class Q: captum through a wrapped forward
function, pytorch-grad-cam through a custom target).

Usage::

    .venv/bin/python benchmarks/bench_cam.py            # 1000 images, batch 250, 1 thread
    .venv/bin/python benchmarks/bench_cam.py --threads 2 --batch-size 1000

Not a test: nothing is asserted. Run on an otherwise idle machine for stable numbers.
"""
from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F

from _timing import best_of, load_test_images
from robust_utils import explanations as E
from robust_utils.models import C3LTClassifier


def _load_model(seed: int):
    """The cached smoke-profile C3LT classifier if present, else a seeded random one."""
    try:
        from robust_utils import cache

        recipe = cache.default_recipe("c3lt_cnn", profile="smoke")
        if cache.checkpoint_path(recipe).exists():
            return cache.get_model(recipe, device="cpu", progress=False).eval(), "cached (smoke profile)"
    except Exception as e:  # the benchmark times the same code with random weights
        print(f"(model cache unavailable: {e}; using random weights)")
    torch.manual_seed(seed)
    return C3LTClassifier().eval(), "random init"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="number of test images (default 1000)")
    ap.add_argument("--batch-size", type=int, default=250, help="images per call, the same for all")
    ap.add_argument("--repeats", type=int, default=3, help="best-of repeats (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--layer", default=None, help="conv layer (default the last: conv2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    try:
        import cv2
        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    model, model_kind = _load_model(args.seed)
    x, _, data_kind = load_test_images(args.n)
    layer = args.layer or model.last_conv_name
    module = dict(model.named_modules())[layer]
    with torch.no_grad():
        top2 = torch.cat([model(x[i:i + 1000]).topk(2, dim=1).indices for i in range(0, len(x), 1000)])
    pred, second = top2[:, 0], top2[:, 1]
    batches = [(x[i:i + args.batch_size], pred[i:i + args.batch_size], second[i:i + args.batch_size])
               for i in range(0, len(x), args.batch_size)]
    size = tuple(x.shape[-2:])

    # -- ours -----------------------------------------------------------------------------------
    def ours(fn, cls):
        def run():
            return torch.cat([fn(model, xb, (p if cls == "target" else q), layer=layer)
                              for xb, p, q in batches])
        return run

    # -- captum ---------------------------------------------------------------------------------
    def captum_gradcam(contrast: bool):
        from captum.attr import LayerAttribution, LayerGradCam

        def run():
            out = []
            for xb, p, q in batches:
                if contrast:
                    fwd = lambda inp, q=q: F.cross_entropy(model(inp), q, reduction="none")  # noqa: E731
                    attr = LayerGradCam(fwd, module).attribute(xb, relu_attributions=True)
                else:
                    attr = LayerGradCam(model, module).attribute(xb, target=p, relu_attributions=True)
                up = LayerAttribution.interpolate(attr, size, interpolate_mode="bilinear")
                out.append(E.normalize_maps(up.squeeze(1).detach()))
            return torch.cat(out)
        return run

    # -- pytorch-grad-cam -----------------------------------------------------------------------
    def pgc(cls_name: str, contrast: bool):
        import pytorch_grad_cam as pg
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        class CrossEntropyTarget:
            def __init__(self, q):
                self.q = q

            def __call__(self, out):
                return F.cross_entropy(out.unsqueeze(0), self.q.view(1))

        def run():
            out = []
            with getattr(pg, cls_name)(model=model, target_layers=[module]) as cam:
                for xb, p, q in batches:
                    targets = ([CrossEntropyTarget(qi) for qi in q] if contrast
                               else [ClassifierOutputTarget(int(pi)) for pi in p])
                    out.append(torch.from_numpy(cam(xb, targets=targets)))
            return torch.cat(out)
        return run

    try:
        import pytorch_grad_cam  # noqa: F401
        import importlib.metadata as md
        pgc_version = md.version("grad-cam")
    except ImportError:
        pgc_version = None
    import captum

    rows = [
        ("Grad-CAM", ours(E.grad_cam, "target"), captum_gradcam(False), pgc("GradCAM", False)),
        ("ContrastCAM", ours(E.contrast_cam, "contrast"), captum_gradcam(True), pgc("GradCAM", True)),
        ("Grad-CAM++", ours(E.grad_cam_plus_plus, "target"), None, pgc("GradCAMPlusPlus", False)),
    ]
    print(f"torch {torch.__version__}, captum {captum.__version__}, "
          f"grad-cam {pgc_version or 'not installed'}, {platform.processor() or platform.machine()}, threads={args.threads}")
    print(f"{len(x)} images ({data_kind}), model C3LT ({model_kind}), layer {layer!r}, "
          f"batch size {args.batch_size}, best of {args.repeats}\n")
    header = (f"{'method':<12} {'ours [s]':>9} {'captum [s]':>11} {'pgc [s]':>9} "
              f"{'captum/ours':>12} {'pgc/ours':>9} {'max|diff| captum':>17} {'max|diff| pgc':>14}")
    print(header)
    print("-" * len(header))
    for name, f_ours, f_captum, f_pgc in rows:
        times, maps = best_of({"ours": f_ours, "captum": f_captum,
                                "pgc": f_pgc if pgc_version else None}, args.repeats)
        t_ours, m_ours = times["ours"], maps["ours"]
        cells = [f"{name:<12}", f"{t_ours:9.3f}"]
        t_c, t_p = times.get("captum"), times.get("pgc")
        d_c = float((maps["captum"] - m_ours).abs().max()) if "captum" in maps else None
        d_p = float((maps["pgc"] - m_ours).abs().max()) if "pgc" in maps else None
        cells += [f"{t_c:11.3f}" if t_c else f"{'n/a':>11}", f"{t_p:9.3f}" if t_p else f"{'n/a':>9}",
                  f"{t_c / t_ours:11.2f}x" if t_c else f"{'n/a':>12}",
                  f"{t_p / t_ours:8.2f}x" if t_p else f"{'n/a':>9}",
                  f"{d_c:17.1e}" if d_c is not None else f"{'n/a':>17}",
                  f"{d_p:14.1e}" if d_p is not None else f"{'n/a':>14}"]
        print(" ".join(cells))
    print("\nGoal: captum/ours >= 1 and pgc/ours >= 2 (pgc = pytorch-grad-cam).")


if __name__ == "__main__":
    main()
