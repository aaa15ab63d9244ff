"""Structure-wise (Huffman) deletion and insertion: masking measured in bits.

Humans do not see pixels but structures, so the x-axis of a masking curve becomes the
*information* the masked image still holds: for each threshold ``t`` of the map, the pixels with
``L >= t`` are deleted (or kept), and the bit ratio

.. math::  r_t = \\frac{B(\\text{masked image})}{B(\\text{original image})},
           \\qquad B(I) = \\sum_{v} h_I(v)\\, \\ell_I(v),

(``h_I`` the histogram of the 8-bit pixel values, ``\\ell_I`` the lengths of the Huffman code
built from it, :func:`huffman_code`, :func:`huffman_bits`) is plotted against the accuracy of
the masked images. The ideal explanation encodes the most important information in the
fewest bits. The results are :class:`robust_utils.interventions.InterventionResult`.

Taught in Part 4, section "Evaluation 3: structure-wise deletion and insertion".
"""
from __future__ import annotations

import heapq
import math
from typing import Mapping, Sequence

import numpy as np
import torch

from ._checks import _is_integer, check_bool, check_fraction, check_images, check_labels, check_positive_int
from .interventions import (InterventionResult, batched_probabilities, check_maps, clean_logits,
                            prepare_inputs)
from .metrics import declares_direction

__all__ = [
    "DEFAULT_THRESHOLDS",
    "huffman_code",
    "huffman_bits",
    "structure_deletion",
    "structure_insertion",
    "bit_ratio_at_accuracy",
]

#: Default thresholds of the structure-wise evaluations: 0, 0.1, ..., 1.
DEFAULT_THRESHOLDS = tuple(i / 10 for i in range(11))


# ---------------------------------------------------------------------------------------------
# 3. Structure-wise (Huffman) deletion and insertion
# ---------------------------------------------------------------------------------------------
def _histogram_items(histogram) -> list[tuple[int, float]]:
    """``[(symbol, count), ...]`` with positive counts, from a mapping or a 1-D sequence."""
    if isinstance(histogram, Mapping):
        items = list(histogram.items())
    else:
        if isinstance(histogram, torch.Tensor):
            histogram = histogram.detach().cpu()
            if histogram.dim() != 1:
                raise ValueError(f"histogram must be 1-D (one count per symbol), got shape "
                                 f"{tuple(histogram.shape)}.")
            histogram = histogram.tolist()
        elif hasattr(histogram, "tolist") and hasattr(histogram, "ndim"):  # numpy
            if histogram.ndim != 1:
                raise ValueError(f"histogram must be 1-D (one count per symbol), got {histogram.ndim}-D.")
            histogram = histogram.tolist()
        if isinstance(histogram, (str, bytes)) or not isinstance(histogram, Sequence):
            raise TypeError("histogram must be a sequence of counts (index = symbol) or a mapping "
                            f"symbol -> count, got {type(histogram).__name__}.")
        items = list(enumerate(histogram))
    out = []
    for s, cnt in items:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"histogram symbols must be ints, got {s!r}.")
        if isinstance(cnt, (bool, np.bool_)) or not isinstance(cnt, (int, float, np.integer, np.floating)) \
                or not math.isfinite(cnt):
            raise TypeError(f"the count of symbol {s} must be a finite number, got {cnt!r}.")
        s, cnt = int(s), (int(cnt) if isinstance(cnt, (int, np.integer)) else float(cnt))
        if cnt < 0:
            raise ValueError(f"the count of symbol {s} is negative ({cnt}); counts must be >= 0.")
        if cnt > 0:
            out.append((s, cnt))
    if not out:
        raise ValueError("histogram is empty or all zero: there is no symbol to encode.")
    return sorted(out)


def huffman_code(histogram) -> dict[int, str]:
    """A Huffman code (Huffman, 1952) for symbols with the given counts.

    The two least frequent subtrees are merged until one tree is left; the first of the pair
    gets the bit ``0``, the second ``1``. Ties are broken deterministically (by the smallest
    symbol for leaves, then by creation order for merged subtrees), so the same histogram
    always gives the same code. The code is prefix-free and optimal: its mean length ``L``
    satisfies ``H <= L < H + 1`` for the entropy ``H`` of the histogram in bits. A histogram
    with a single symbol gets the one-bit code ``"0"`` (a code needs at least one bit per
    symbol).

    Parameters
    ----------
    histogram : sequence, 1-D tensor/array, or mapping
        Counts per symbol (index = symbol), or ``{symbol: count}``. Zero counts are skipped.

    Returns
    -------
    dict[int, str]
        Symbol -> code word, for the symbols with a positive count.

    Taught in Part 4, section "Evaluation 3: structure-wise deletion and insertion".
    """
    items = _histogram_items(histogram)
    if len(items) == 1:
        return {items[0][0]: "0"}
    heap = [(cnt, order, s) for order, (s, cnt) in enumerate(items)]
    heapq.heapify(heap)
    children: dict[int, tuple[int, int]] = {}
    next_id = len(items)
    leaf_symbol = {order: s for order, (s, _) in enumerate(items)}
    while len(heap) > 1:
        c0, i0, _ = heapq.heappop(heap)
        c1, i1, _ = heapq.heappop(heap)
        children[next_id] = (i0, i1)
        heapq.heappush(heap, (c0 + c1, next_id, -1))
        next_id += 1
    code: dict[int, str] = {}
    stack = [(heap[0][1], "")]
    while stack:
        node, prefix = stack.pop()
        if node in children:
            left, right = children[node]
            stack.append((right, prefix + "1"))
            stack.append((left, prefix + "0"))
        else:
            code[leaf_symbol[node]] = prefix
    return dict(sorted(code.items()))


def _quantise(images) -> torch.Tensor:
    """``(N, H, W)`` / ``(N, C, H, W)`` uint8 or [0, 1] float images -> ``(N, P)`` long values 0..255."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor (N, H, W) or (N, C, H, W), got "
                        f"{type(images).__name__}.")
    if images.dim() not in (3, 4):
        hint = (" A single (H, W) image must be passed as images.unsqueeze(0), so that it is not "
                "read as H images of one row." if images.dim() == 2 else
                " A single (C, H, W) image must be passed as images.unsqueeze(0)." if images.dim() == 3
                else "")
        raise ValueError(f"images must be a batch shaped (N, H, W) or (N, C, H, W), got shape "
                         f"{tuple(images.shape)}.{hint}")
    if images.shape[0] == 0 or images[0].numel() == 0:
        raise ValueError(f"images must be a non-empty batch, got shape {tuple(images.shape)}.")
    if images.dtype == torch.uint8:
        return images.reshape(images.shape[0], -1).long()
    if not torch.is_floating_point(images):
        raise TypeError(f"images must be uint8 (0..255) or float in [0, 1], got dtype {images.dtype}.")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values.")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"float images must lie in [0, 1] (they are quantised to 8 bits as "
                         f"round(255 x)), got values in [{lo:.3g}, {hi:.3g}].")
    return (images.reshape(images.shape[0], -1) * 255).round().clamp(0, 255).long()


def _histograms(q: torch.Tensor) -> torch.Tensor:
    counts = torch.zeros(q.shape[0], 256, dtype=torch.long, device=q.device)
    return counts.scatter_add_(1, q, torch.ones_like(q))


def _huffman_cost(counts: torch.Tensor) -> torch.Tensor:
    """Total Huffman code length of each row of ``(B, K)`` counts, batched over rows.

    The cost of a Huffman code equals the sum of the weights of its merged nodes, so the
    merges of all rows run together: each step merges the two smallest weights of every row
    that still has two subtrees. A single-symbol row costs one bit per symbol.
    """
    nnz = (counts > 0).sum(1)
    total = counts.sum(1)
    sentinel = torch.iinfo(torch.long).max // 4
    w = torch.where(counts > 0, counts, torch.full_like(counts, sentinel))
    cost = torch.zeros_like(total)
    for _ in range(max(int(nnz.max()) - 1, 0)):
        vals, idx = torch.topk(w, 2, dim=1, largest=False)
        a, b = vals[:, 0], vals[:, 1]
        active = b < sentinel
        merged = a + b
        cost += torch.where(active, merged, torch.zeros_like(merged))
        w.scatter_(1, idx[:, :1], torch.where(active, merged, a)[:, None])
        w.scatter_(1, idx[:, 1:], torch.where(active, torch.full_like(b, sentinel), b)[:, None])
    return torch.where(nnz == 1, total, cost)


def huffman_bits(images, code: Mapping[int, str] | None = None) -> torch.Tensor:
    """Number of bits needed to Huffman-encode each image's 8-bit pixels.

    Pixels are quantised to 8 bits (``round(255 x)`` for float images in ``[0, 1]``; uint8 as
    is). With ``code=None`` each image gets its own optimal code, built from its own
    histogram (as :func:`huffman_code` would: every Huffman code of a histogram has the same
    total length), and the result is ``sum_v h(v) len(code(v))``; all channels are pooled. The
    lengths are computed for the whole batch at once. The code table itself is not counted,
    and a constant image costs one bit per pixel (a code word has at least one bit).

    Parameters
    ----------
    images : torch.Tensor
        ``(N, H, W)`` or ``(N, C, H, W)``, uint8 or float in ``[0, 1]``. The batch dimension is
        required: a single ``(H, W)`` image raises (it would otherwise be read as ``H`` images),
        so pass ``image.unsqueeze(0)``. A 3-D tensor is always read as ``N`` grayscale images,
        never as one ``(C, H, W)`` image.
    code : dict[int, str], optional
        A fixed code (e.g. ``huffman_code`` of a reference histogram) used for every image; it
        must have a word for every pixel value that occurs, and be prefix-free (no word is the
        beginning of another, so no two are equal): otherwise it could not be decoded and its
        bit count would mean nothing. Symbols may be Python or NumPy integers 0..255.

    Returns
    -------
    torch.Tensor
        ``(N,)`` int64 bit counts.

    Taught in Part 4, section "Evaluation 3: structure-wise deletion and insertion".
    """
    q = _quantise(images)
    counts = _histograms(q)
    if code is None:
        return _huffman_cost(counts)
    if not isinstance(code, Mapping) or not code:
        raise TypeError("code must be a non-empty dict symbol -> code word, e.g. huffman_code(histogram).")
    lengths = torch.full((256,), -1, dtype=torch.long)
    owner: dict[str, int] = {}
    for s, word in code.items():
        if not _is_integer(s) or not 0 <= int(s) <= 255:
            raise ValueError(f"code symbols must be 8-bit pixel values 0..255, got {s!r}.")
        s = int(s)
        if not isinstance(word, str) or not word or set(word) - {"0", "1"}:
            raise ValueError(f"the code word of symbol {s} must be a non-empty string of 0s and 1s, "
                             f"got {word!r}.")
        if lengths[s] >= 0:
            raise ValueError(f"symbol {s} appears twice in the code (e.g. as {s} and torch.tensor({s})); "
                             "give each pixel value one code word.")
        if word in owner:
            raise ValueError(f"symbols {owner[word]} and {s} have the same code word {word!r}, so the "
                             "code cannot be decoded; use a prefix-free code such as huffman_code(histogram).")
        owner[word] = s
        lengths[s] = len(word)
    words = sorted(owner)
    for a, b in zip(words, words[1:]):     # in sorted order a prefix sits right before its extensions
        if b.startswith(a):
            raise ValueError(f"the code is not prefix-free: the word {a!r} of symbol {owner[a]} is the "
                             f"beginning of the word {b!r} of symbol {owner[b]}, so the code cannot be "
                             "decoded; use a prefix-free code such as huffman_code(histogram).")
    lengths = lengths.to(counts.device)
    missing = ((counts > 0) & (lengths < 0)).any(0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"the code has no word for pixel value(s) {missing[:10]}"
                         f"{' ...' if len(missing) > 10 else ''}, which occur in the images; build it "
                         "from a histogram that includes them (or use code=None).")
    return (counts * lengths.clamp_min(0)).sum(1)


def _check_thresholds(thresholds, device, dtype) -> torch.Tensor:
    try:
        t = torch.as_tensor(thresholds if not isinstance(thresholds, torch.Tensor)
                            else thresholds.detach().cpu(), dtype=torch.float64)
    except (TypeError, ValueError):
        raise TypeError(f"thresholds must be a sequence of numbers in [0, 1], got {thresholds!r}.") from None
    if t.dim() == 0:
        t = t[None]
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D sequence, got shape {tuple(t.shape)}.")
    if not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        raise ValueError(f"thresholds must lie in [0, 1] (the maps are normalised to [0, 1]), got "
                         f"{[round(v, 4) for v in t.tolist()]}.")
    return t.to(device=device, dtype=dtype)


def _structure(model, x, y, maps, thresholds, batch_size, progress, mode: str) -> InterventionResult:
    x = prepare_inputs(model, x)
    n, c, h, w = x.shape
    check_images(x, "x", value_range=(0.0, 1.0))
    y = check_labels(y, n=n, name="y").to(x.device)
    maps = check_maps(maps, x, unit=True)
    batch_size = check_positive_int(batch_size, "batch_size")
    progress = check_bool(progress, "progress")
    thr = _check_thresholds(DEFAULT_THRESHOLDS if thresholds is None else thresholds, x.device, x.dtype)
    n_t = thr.numel()
    clean = clean_logits(model, x, batch_size)
    if int(y.max()) >= clean.shape[1] or int(y.min()) < 0:
        raise ValueError(f"y must lie in [0, {clean.shape[1] - 1}] (the model has {clean.shape[1]} "
                         f"classes), got values in [{int(y.min())}, {int(y.max())}].")
    clean_correct = (clean.argmax(1).to(x.device) == y).to(x.dtype)
    deleting = mode == "structure_deletion"
    bits_masked = torch.empty(n * n_t, dtype=torch.long, device=x.device)

    def make_rows(s: int, e: int) -> torch.Tensor:
        r = torch.arange(s, e, device=x.device)
        i, k = r // n_t, r % n_t
        sel = (maps[i] >= thr[k][:, None, None])[:, None]          # (B, 1, H, W)
        keep = ~sel if deleting else sel
        masked = x[i] * keep.to(x.dtype)
        bits_masked[s:e] = huffman_bits(masked.clamp(0, 1))
        return masked

    probs = batched_probabilities(model, n * n_t, make_rows, batch_size, progress, mode, x.device)
    probs = probs.view(n, n_t, -1)
    correct = (probs.argmax(2) == y[:, None]).to(x.dtype)
    p_true = probs.gather(2, y[:, None, None].expand(n, n_t, 1)).squeeze(2)
    bits0 = huffman_bits(x.clamp(0, 1))
    ratio = bits_masked.view(n, n_t).to(x.dtype) / bits0[:, None].to(x.dtype)
    accuracy = correct.mean(0)
    mean_ratio = ratio.mean(0)
    # Per-image score: area under correctness vs the image's own bit ratio; the summary area:
    # accuracy vs mean bit ratio (the slides' plot), both by the trapezoid rule in ratio order.
    o = ratio.argsort(dim=1, stable=True)
    scores = torch.trapezoid(correct.gather(1, o), ratio.gather(1, o), dim=1)
    om = mean_ratio.argsort(dim=0, stable=True)
    area = float(torch.trapezoid(accuracy[om], mean_ratio[om])) if n_t > 1 else 0.0
    return InterventionResult(mode, not deleting, scores, correct, thr,
                              {"bit_ratio": ratio, "accuracy": accuracy, "mean_bit_ratio": mean_ratio,
                               "area": area, "probability": p_true, "bits": bits_masked.view(n, n_t),
                               "bits_original": bits0, "accuracy_unmasked": float(clean_correct.mean())})


@declares_direction("worse")
def structure_deletion(model, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor, *,
                       thresholds=None, batch_size: int = 512, progress: bool = False) -> InterventionResult:
    """Structure-wise deletion: accuracy against the Huffman bits left after deleting a region.

    For each threshold ``t``, every pixel whose map value is ``>= t`` is deleted (set to 0, all
    channels), the masked images are classified, and the information that is left is measured
    as the bit ratio ``huffman_bits(masked) / huffman_bits(original)`` (each image encoded
    with its own Huffman code, :func:`huffman_bits`). The slides plot, one point per
    threshold, the accuracy over all images (y-axis) against the ratio (x-axis; smaller =
    fewer bits), one curve per explanation method. A good explanation puts the decisive
    structure in few bits, so deleting it costs accuracy while most of the bits remain: the
    accuracy curve stays **low** (a lower area is better).

    Implemented from the tutorial's slides: no public code exists for the structure-wise
    evaluation. Two choices are ours. (1) The slides' step-by-step text for deletion reads
    "delete (mask) all the pixels in the original image below the threshold"; we delete the
    pixels *at or above* it, so that structure-wise deletion removes what the explanation
    marks important, like pixel-wise deletion; the slides' wording is what
    :func:`structure_insertion` does. (2) The x-axis is the mean over images of the per-image
    bit ratios. Note that a constant (fully deleted) image still costs one bit per pixel, so
    the ratio does not reach 0.

    Parameters
    ----------
    model : callable
        Images -> logits; an ``nn.Module`` must be in eval mode.
    x : torch.Tensor
        Images ``(N, C, H, W)`` in ``[0, 1]`` (they are quantised to 8 bits for the code).
    y : torch.Tensor
        ``(N,)`` ground-truth labels: the y-axis is accuracy.
    maps : torch.Tensor
        ``(N, H, W)`` explanations in ``[0, 1]`` (e.g. min-max normalised CAMs).
    thresholds : sequence of float in [0, 1], optional
        Default :data:`DEFAULT_THRESHOLDS` (0, 0.1, ..., 1).
    batch_size : int, default 512
    progress : bool, default False

    Returns
    -------
    InterventionResult
        ``name="structure_deletion"``, ``higher_is_better=False``; ``curves`` = per-image
        correctness ``(N, T)`` (1.0 or 0.0) at ``x`` = the thresholds ``(T,)``; ``scores``
        ``(N,)`` = the area under an image's correctness against its own bit ratio
        (trapezoid, in ratio order);
        ``extra``: ``"bit_ratio"`` ``(N, T)`` = bits(masked) / bits(original),
        ``"accuracy"`` ``(T,)``, ``"mean_bit_ratio"`` ``(T,)``, ``"area"`` = the area under
        accuracy against mean bit ratio (the slides' plot; over the measured points only, no
        extrapolation to 0 or 1), ``"probability"`` ``(N, T)`` of the true class, ``"bits"``
        ``(N, T)``, ``"bits_original"`` ``(N,)``, ``"accuracy_unmasked"``.

    Taught in Part 4, section "Evaluation 3: structure-wise deletion and insertion".
    """
    return _structure(model, x, y, maps, thresholds, batch_size, progress, "structure_deletion")


@declares_direction("better")
def structure_insertion(model, x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor, *,
                        thresholds=None, batch_size: int = 512, progress: bool = False) -> InterventionResult:
    """Structure-wise insertion: accuracy against the Huffman bits of the region kept.

    For each threshold ``t``, only the pixels whose map value is ``>= t`` are kept (the others
    are set to 0: "delete all the pixels below the threshold", the slides' Step 1), the masked
    images are classified, and the bit ratio ``huffman_bits(masked) / huffman_bits(original)``
    measures how much information was inserted. The slides plot the accuracy over all images
    against the ratio, one point per threshold. Ideal: the explanation encodes the most
    important information in the fewest bits, so accuracy is already high at a small ratio (a
    higher area is better). The slides warn that this can reward causal, even adversarial,
    explanations that ignore the context.

    Implemented from the tutorial's slides: no public code exists; see
    :func:`structure_deletion` for the choices made.

    Parameters
    ----------
    model : callable
        Images -> logits; an ``nn.Module`` must be in eval mode.
    x : torch.Tensor
        Images ``(N, C, H, W)`` in ``[0, 1]`` (they are quantised to 8 bits for the code).
    y : torch.Tensor
        ``(N,)`` ground-truth labels: the y-axis is accuracy.
    maps : torch.Tensor
        ``(N, H, W)`` explanations in ``[0, 1]`` (e.g. min-max normalised CAMs).
    thresholds : sequence of float in [0, 1], optional
        Default :data:`DEFAULT_THRESHOLDS` (0, 0.1, ..., 1).
    batch_size : int, default 512
    progress : bool, default False

    Returns
    -------
    InterventionResult
        ``name="structure_insertion"``, ``higher_is_better=True``; ``curves`` = per-image
        correctness ``(N, T)`` (1.0 or 0.0) at ``x`` = the thresholds ``(T,)``; ``scores``
        ``(N,)`` = the area under an image's correctness against its own bit ratio
        (trapezoid, in ratio order);
        ``extra``: ``"bit_ratio"`` ``(N, T)`` = bits(masked) / bits(original),
        ``"accuracy"`` ``(T,)``, ``"mean_bit_ratio"`` ``(T,)``, ``"area"`` = the area under
        accuracy against mean bit ratio (the slides' plot; over the measured points only, no
        extrapolation to 0 or 1), ``"probability"`` ``(N, T)`` of the true class, ``"bits"``
        ``(N, T)``, ``"bits_original"`` ``(N,)``, ``"accuracy_unmasked"``.

    Taught in Part 4, section "Evaluation 3: structure-wise deletion and insertion".
    """
    return _structure(model, x, y, maps, thresholds, batch_size, progress, "structure_insertion")




@declares_direction("worse")
def bit_ratio_at_accuracy(result: InterventionResult, accuracy: float) -> float:
    """The fewest bits (mean bit ratio) at which a structure-wise insertion curve reaches ``accuracy``.

    The slides compare explanations *at equal accuracy* ("D_C and D_G represent 65% accuracy for
    CausalCAM and GradCAM"): on the curve of accuracy against mean bit ratio (one point per
    threshold, :func:`structure_insertion`: the bits of the region the map keeps), walk from the fewest bits
    up and return the bit ratio where the curve first reaches ``accuracy``, interpolating linearly
    between the two points that bracket it. A point that already reaches it counts as is; a curve
    that never reaches it gives ``nan``. Lower is better: the explanation keeps what the classifier
    needs in fewer bits.

    Taught in Part 4, section "CausalCAM against Grad-CAM and Grad-CAM++".
    """
    if not isinstance(result, InterventionResult) or "mean_bit_ratio" not in result.extra:
        raise TypeError("result must be the InterventionResult of structure_insertion.")
    if result.name != "structure_insertion":
        raise ValueError(f"bit_ratio_at_accuracy reads a structure_insertion curve (the bits of the *kept* "
                         f"region); got a {result.name!r} result, whose bits are what is left after deleting.")
    target = check_fraction(accuracy, "accuracy")
    r = result.extra["mean_bit_ratio"].detach().double().cpu()
    a = result.extra["accuracy"].detach().double().cpu()
    if not (torch.isfinite(r).all() and torch.isfinite(a).all()):
        raise ValueError("the curve holds NaN or infinite values; recompute it.")
    o = r.argsort(stable=True)
    r, a = r[o].tolist(), a[o].tolist()
    if a[0] >= target:
        return float(r[0])
    for k in range(1, len(r)):
        if a[k] >= target:
            lo_r, hi_r, lo_a, hi_a = r[k - 1], r[k], a[k - 1], a[k]
            return float(lo_r + (target - lo_a) / (hi_a - lo_a) * (hi_r - lo_r))
    return float("nan")
