r"""Optimal transport and distributional robustness, small enough to solve exactly.

**Monge and Kantorovich.** Monge (1781) looks for a map :math:`T` that pushes the source
distribution :math:`\mu` onto the target :math:`\nu` (:math:`T_\#\mu = \nu`) at least cost,
:math:`\inf_T \int c(x, T(x))\,\mathrm{d}\mu(x)`. Kantorovich relaxes the map to a *plan*: a
coupling :math:`\pi` whose marginals are :math:`\mu` and :math:`\nu`, so that mass may split.
For discrete distributions :math:`a = \sum_i a_i \delta_{x_i}`, :math:`b = \sum_j b_j
\delta_{y_j}` it is a linear programme,

.. math::  \mathrm{OT}_c(a, b) = \min_{\pi \ge 0}\ \sum_{ij} \pi_{ij} c_{ij}
           \quad\text{s.t.}\quad \sum_j \pi_{ij} = a_i,\ \sum_i \pi_{ij} = b_j,

and with :math:`c_{ij} = \lVert x_i - y_j\rVert^p` the Wasserstein distance is
:math:`W_p(a, b) = \mathrm{OT}_c(a, b)^{1/p}`. Sinkhorn (Cuturi, 2013) adds an entropy term
:math:`-\varepsilon_{\mathrm{reg}} H(\pi)`: the plan becomes blurred but is found by
alternating rescalings, fast and differentiable; its *linear* cost :math:`\sum \pi c` is
never below the exact minimum. In one dimension the optimal plan is monotone and

.. math::  W_1(u, v) = \int_{-\infty}^{\infty} \lvert F_u(t) - F_v(t)\rvert\,\mathrm{d}t,

the area between the two cumulative distribution functions (:func:`w1_cdf_area`).

**Distributional robustness.** Let :math:`v \sim P` and :math:`f` be a risk. The worst case
over all distributions :math:`Q` within transport budget :math:`\epsilon` of :math:`P`, and
its dual (Blanchet and Murthy, 2019; Sinha et al., 2018: the slides' "key result"), are

.. math::  \sup_{Q:\, W_c(Q, P) \le \epsilon} \mathbb{E}_Q[f(v)]
           = \inf_{\lambda \ge 0} \Big\{ \lambda \epsilon + \mathbb{E}_{v \sim P}
           \big[\sup_{v'} \big(f(v') - \lambda c(v, v')\big)\big] \Big\}.

On a grid :math:`v_1, \dots, v_n` with :math:`P = \sum_i p_i \delta_{v_i}` both sides are
finite problems. The primal (:func:`dro_primal`) is the linear programme over
:math:`\pi_{ij} \ge 0`, the mass moved from :math:`v_i` to :math:`v_j`,

.. math::  \max_{\pi \ge 0}\ \sum_{ij} \pi_{ij} f_j \quad\text{s.t.}\quad
           \sum_j \pi_{ij} = p_i,\ \ \sum_{ij} \pi_{ij} c_{ij} \le \epsilon,

whose worst case is :math:`Q_j = \sum_i \pi_{ij}`. The dual (:func:`dro_dual`) is the
minimum of the convex, piecewise-linear function
:math:`g(\lambda) = \lambda\epsilon + \sum_i p_i \max_j (f_j - \lambda c_{ij})`, found exactly
among its kinks; :math:`\lambda^*` is the price of one unit of transport. The two values are
equal (linear-programming duality; tested). The slides' cost for labelled data,
:math:`c(v, v') = d(x, x') + \infty\cdot\mathbb{1}[y \ne y']`, forbids changing the label
(:func:`label_preserving_cost`): an entry :math:`c_{ij} = +\infty` removes the move.

The budget is written :math:`W_c(Q, P) < \epsilon` on the slides; on a grid the supremum over
the open ball equals the maximum over the closed one, which is what is computed (for
:math:`\epsilon > 0`; at :math:`\epsilon = 0` the closed ball is :math:`\{P\}`).

Weights are probability vectors (>= 0, summing to 1 within ``1e-6``); points are ``(n,)`` or
``(n, d)`` arrays, lists or tensors. The primal has :math:`n^2` variables: keep grids small.

Taught in Part 5, sections "An optimal-transport primer" and "Distributional robustness on a
grid".
"""
from __future__ import annotations

import warnings

import numpy as np
import ot
import torch
from scipy import sparse
from scipy.optimize import linprog
from scipy.spatial.distance import cdist

from ._checks import as_numpy_1d, check_choice, check_number, check_positive_int

__all__ = [
    "cost_matrix",
    "transport_plan",
    "wasserstein_distance",
    "empirical_cdfs",
    "w1_cdf_area",
    "label_preserving_cost",
    "dro_primal",
    "dro_dual",
    "dro_dual_objective",
    "worst_case_path",
]

_SUM_TOL = 1e-6
_MAX_VARIABLES = 4_000_000


# --- input checks ----------------------------------------------------------------------------
def _to_numpy(v):
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v


def _as_float(v, name: str) -> np.ndarray:
    if callable(v) and not isinstance(v, np.ndarray):
        raise TypeError(f"{name} must be an array of numbers, got a function; evaluate it first "
                        f"(e.g. pass {name}(support), its values on the grid).")
    arr = np.asarray(_to_numpy(v))
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    return arr.astype(np.float64)


def _as_points(x, name: str) -> np.ndarray:
    """``(n,)`` or ``(n, d)`` finite points, returned as ``(n, d)`` float64."""
    arr = _as_float(x, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be points of shape (n,) for 1-D or (n, d), got shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one point.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates.")
    return arr


def _as_vector(v, name: str, n: int | None = None, what: str = "point") -> np.ndarray:
    """A finite 1-D float vector, of length ``n`` (one value per ``what``) unless ``None``."""
    arr = as_numpy_1d(_as_float(v, name), name)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {n} {what}s; "
                         f"pass one value per {what}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def _as_weights(w, name: str, n: int, what: str = "point") -> np.ndarray:
    """A probability vector of length ``n`` (``None``: uniform), renormalised to sum exactly 1."""
    if w is None:
        return np.full(n, 1.0 / n)
    arr = _as_vector(w, name, n, what)
    if (arr < 0).any():
        raise ValueError(f"{name} has negative entries (minimum {arr.min():.4g}); the weights of a "
                         "distribution are >= 0.")
    s = arr.sum()
    if abs(s - 1.0) > _SUM_TOL:
        raise ValueError(f"{name} sums to {s:.6g}, not 1; the weights of a distribution sum to 1: "
                         f"normalise with {name} / {name}.sum().")
    return arr / s


def _check_power(p, minimum: float = 0.0) -> float:
    """The power of the cost |x - y|^p: > 0, or >= ``minimum`` (1 for a Wasserstein distance)."""
    hint = "the cost is |x - y|^p: p=1 or p=2 usually" + ("." if not minimum else
                                                            "; W_p is a distance only for p >= 1.")
    return check_number(p, "p", minimum=minimum, strict=not minimum, hint=hint)


def _check_eps(eps) -> float:
    return check_number(eps, "eps", minimum=0.0, strict=False,
                        hint="eps is the transport budget W_c(Q, P) <= eps, in units of the cost c.")


def _check_cost(cost, n: int) -> np.ndarray:
    """An ``(n, n)`` cost with entries in ``[0, +inf]`` and a zero diagonal."""
    c = _as_float(cost, "cost")
    if c.shape != (n, n):
        raise ValueError(f"cost must be an (n, n) matrix for the n = {n} support points, got shape "
                         f"{c.shape}; build one with cost_matrix(support, support, p=1).")
    if np.isnan(c).any():
        raise ValueError("cost contains NaN; use +inf (np.inf) for a forbidden move.")
    if (c < 0).any():
        raise ValueError(f"cost has negative entries (minimum {c.min():.4g}); a transport cost is >= 0 "
                         "(+inf for a forbidden move).")
    d = np.diag(c)
    if (d > 1e-12).any():
        i = int(np.argmax(d))
        raise ValueError(f"cost[{i}, {i}] = {d[i]:.4g}, but staying put must cost nothing: the diagonal "
                         "of the cost must be 0 (c(v, v) = 0).")
    c = c.copy()
    np.fill_diagonal(c, 0.0)
    return c


def _check_problem(p, f, cost, eps):
    """The dual's inputs, checked; only the rows with ``p_i > 0`` are kept (the others add 0)."""
    f = _as_vector(f, "f")
    n = f.shape[0]
    p = _as_weights(p, "p", n, "support point")
    c = _check_cost(cost, n)
    keep = p > 0
    return p[keep], f, c[keep], _check_eps(eps)


# --- an optimal-transport primer -------------------------------------------------------------
def cost_matrix(xs, xt, p: float = 2) -> np.ndarray:
    r"""The ground cost :math:`c_{ij} = \lVert x_i - y_j \rVert_2^p` between two point clouds.

    Parameters
    ----------
    xs, xt : array-like or torch.Tensor
        Source and target points, shaped ``(n,)`` / ``(m,)`` (1-D) or ``(n, d)`` / ``(m, d)``.
    p : float, default 2
        Power of the Euclidean distance (> 0).

    Returns
    -------
    numpy.ndarray
        ``(n, m)`` float64 costs, exactly 0 between identical points.

    Taught in Part 5, section "An optimal-transport primer".
    """
    p = _check_power(p)
    a, b = _as_points(xs, "xs"), _as_points(xt, "xt")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"xs and xt must live in the same space, got {a.shape[1]}-D and {b.shape[1]}-D "
                         "points.")
    d = cdist(a, b, metric="euclidean")
    return d if p == 1 else d ** p


def transport_plan(xs, xt, a=None, b=None, *, method: str = "exact", reg: float = 0.05,
                   p: float = 2, max_iter: int = 10_000) -> tuple[np.ndarray, float]:
    r"""The optimal (Kantorovich) transport plan between two weighted point clouds.

    Parameters
    ----------
    xs, xt : array-like or torch.Tensor
        Source ``(n,)`` / ``(n, d)`` and target ``(m,)`` / ``(m, d)`` points.
    a, b : array-like, optional
        Their weights (probability vectors); uniform when omitted.
    method : {"exact", "sinkhorn"}
        ``"exact"``: the network-simplex solution of the linear programme (:func:`ot.emd`).
        ``"sinkhorn"``: the entropy-regularised plan (:func:`ot.sinkhorn`, log-domain
        iterations, which do not underflow for small ``reg``).
    reg : float, default 0.05
        Entropy weight of Sinkhorn, in units of the cost (larger: blurrier plan). Unused for
        ``"exact"``.
    p : float, default 2
        The cost is :math:`\lVert x - y\rVert^p` (:func:`cost_matrix`).
    max_iter : int, default 10000
        Iteration limit of Sinkhorn (the exact solver gets 100 times as many).

    Returns
    -------
    plan : numpy.ndarray
        ``(n, m)`` coupling: ``plan[i, j]`` is the mass moved from ``xs[i]`` to ``xt[j]``; its
        row sums are ``a`` and its column sums ``b`` (Sinkhorn: up to its tolerance).
    cost : float
        The linear cost :math:`\sum_{ij} \pi_{ij} c_{ij}` of the plan (no entropy term), so an
        exact and a Sinkhorn plan can be compared: the exact one is never more expensive.

    Taught in Part 5, section "An optimal-transport primer".
    """
    check_choice(method, "method", ["exact", "sinkhorn"])
    max_iter = check_positive_int(max_iter, "max_iter")
    M = cost_matrix(xs, xt, p=p)
    n, m = M.shape
    a = _as_weights(a, "a", n, "source point")
    b = _as_weights(b, "b", m, "target point")
    if method == "exact":
        plan, log = ot.emd(a, b, M, numItermax=100 * max_iter, log=True)
        if log.get("warning"):
            raise RuntimeError(f"the exact solver did not finish ({log['warning']}); raise max_iter.")
    else:
        reg = check_number(reg, "reg", minimum=0.0, strict=True,
                           hint="reg is the entropy weight of Sinkhorn, in units of the cost: try 0.05.")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", numItermax=max_iter, stopThr=1e-10)
        for w in caught:
            if "converge" not in str(w.message).lower():
                warnings.warn(w.message, w.category, stacklevel=2)
        if any("converge" in str(w.message).lower() for w in caught):
            warnings.warn(f"Sinkhorn did not converge in {max_iter} iterations (reg={reg:g}); its "
                          "marginals are only approximate: raise max_iter or reg.", RuntimeWarning,
                          stacklevel=2)
    plan = np.asarray(plan, dtype=np.float64)
    return plan, float((plan * M).sum())


def wasserstein_distance(xs, xt, a=None, b=None, *, p: float = 1) -> float:
    r"""The Wasserstein distance :math:`W_p = \big(\min_\pi \sum \pi_{ij} \lVert x_i - y_j\rVert^p\big)^{1/p}`.

    Parameters
    ----------
    xs, xt, a, b
        Points and weights, as in :func:`transport_plan`.
    p : float, default 1
        Order of the distance (>= 1; 1 and 2 are the usual ones).

    Returns
    -------
    float
        :math:`W_p`, the ``1/p``-th power of the exact optimal cost (0 for identical clouds).

    Taught in Part 5, section "An optimal-transport primer".
    """
    p = _check_power(p, minimum=1.0)
    _, cost = transport_plan(xs, xt, a, b, method="exact", p=p)
    return float(max(cost, 0.0) ** (1.0 / p))


def empirical_cdfs(u, v, u_weights=None, v_weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The two cumulative distribution functions of 1-D discrete distributions, on their merged support.

    Parameters
    ----------
    u, v : array-like or torch.Tensor
        1-D values (atoms) of the two distributions; repeated values are allowed.
    u_weights, v_weights : array-like, optional
        Their weights (probability vectors); uniform when omitted.

    Returns
    -------
    t : numpy.ndarray
        The sorted distinct atoms of both distributions, ``(k,)``.
    F_u, F_v : numpy.ndarray
        :math:`F(t) = P(X \le t)` at each ``t``: the CDFs are right-continuous steps, constant
        on ``[t[i], t[i+1])``, so ``plt.step(t, F_u, where="post")`` draws them and
        ``sum(|F_u - F_v|[:-1] * diff(t))`` is the area between them (:func:`w1_cdf_area`).

    Taught in Part 5, section "An optimal-transport primer".
    """
    u, v = _as_vector(u, "u"), _as_vector(v, "v")
    uw = _as_weights(u_weights, "u_weights", u.shape[0], "value of u")
    vw = _as_weights(v_weights, "v_weights", v.shape[0], "value of v")
    t = np.unique(np.concatenate([u, v]))

    def cdf(x, w):
        order = np.argsort(x, kind="stable")
        xs, cw = x[order], np.concatenate([[0.0], np.cumsum(w[order])])
        return np.minimum(cw[np.searchsorted(xs, t, side="right")], 1.0)

    return t, cdf(u, uw), cdf(v, vw)


def w1_cdf_area(u, v, u_weights=None, v_weights=None) -> float:
    r"""1-D Wasserstein-1 distance as the area between the CDFs, :math:`\int \lvert F_u - F_v \rvert`.

    Exact for discrete distributions: between two consecutive atoms both CDFs are constant, so
    the integral is a finite sum of rectangles. Agrees with :func:`scipy.stats.wasserstein_distance`,
    :func:`ot.wasserstein_1d` and :func:`ot.emd2` with cost :math:`\lvert x - y\rvert` (tested).

    Parameters
    ----------
    u, v, u_weights, v_weights
        The two 1-D distributions, as in :func:`empirical_cdfs`.

    Returns
    -------
    float
        :math:`W_1(u, v) = \sum_i \lvert F_u(t_i) - F_v(t_i) \rvert\,(t_{i+1} - t_i)`.

    Taught in Part 5, section "An optimal-transport primer".
    """
    t, fu, fv = empirical_cdfs(u, v, u_weights, v_weights)
    return float(np.sum(np.abs(fu - fv)[:-1] * np.diff(t)))


# --- distributional robustness on a grid -----------------------------------------------------
def label_preserving_cost(points, labels, *, p: float = 1) -> np.ndarray:
    r"""The slides' cost on labelled points, :math:`c(v, v') = d(x, x')^p + \infty\cdot\mathbb{1}[y \ne y']`.

    Parameters
    ----------
    points : array-like or torch.Tensor
        The inputs :math:`x` of the support points, ``(n,)`` or ``(n, d)``.
    labels : array-like or torch.Tensor
        Their labels :math:`y`, ``(n,)`` integers.
    p : float, default 1
        Power of the Euclidean distance.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` cost, ``+inf`` between points of different labels: moving mass may change the
        input but never the label.

    Taught in Part 5, section "Distributional robustness on a grid".
    """
    c = cost_matrix(points, points, p=p)
    y = as_numpy_1d(_to_numpy(labels), "labels")
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integers (class indices), got dtype {y.dtype}.")
    if y.shape[0] != c.shape[0]:
        raise ValueError(f"labels has {y.shape[0]} entries but there are {c.shape[0]} points; "
                         "pass one label per point.")
    c[y[:, None] != y[None, :]] = np.inf
    return c


def dro_primal(support, p, f, eps, *, cost=None) -> tuple[float, np.ndarray, np.ndarray]:
    r"""The worst-case risk :math:`\max_{Q:\, W_c(Q, P) \le \epsilon} \mathbb{E}_Q[f]`, by linear programming.

    Solves the module's primal programme over :math:`\pi_{ij} \ge 0`, the mass moved from
    support point :math:`i` to point :math:`j`, with :func:`scipy.optimize.linprog` (HiGHS);
    forbidden moves (:math:`c_{ij} = \infty`) and rows with :math:`p_i = 0` have no variable.

    Parameters
    ----------
    support : array-like or torch.Tensor
        The grid, ``(n,)`` (1-D) or ``(n, d)`` points.
    p : array-like
        The weights of the empirical :math:`P` on the grid (a probability vector, ``(n,)``).
    f : array-like
        The risk (loss) at each grid point, ``(n,)``.
    eps : float
        The transport budget (>= 0), in units of the cost.
    cost : array-like, optional
        ``(n, n)`` costs :math:`c_{ij} \in [0, +\infty]` with a zero diagonal; default the
        Euclidean distance :math:`\lVert v_i - v_j\rVert` (:func:`cost_matrix` with ``p=1``).
        See :func:`label_preserving_cost` for the cost that forbids changing the label.

    Returns
    -------
    value : float
        The worst-case risk :math:`\sum_j Q_j f_j`; ``E_P[f]`` at ``eps = 0`` (distinct grid
        points), :math:`\sum_i p_i \max_{j:\, c_{ij} < \infty} f_j` for a large budget.
    coupling : numpy.ndarray
        ``(n, n)`` optimal :math:`\pi`; its row sums are ``p``.
    q : numpy.ndarray
        ``(n,)`` worst-case distribution :math:`Q_j = \sum_i \pi_{ij}` (column sums), with
        :math:`W_c(Q, P) \le \sum \pi c \le \epsilon`.

    Taught in Part 5, section "Distributional robustness on a grid".
    """
    pts = _as_points(support, "support")
    n = pts.shape[0]
    f = _as_vector(f, "f", n, "support point")
    p = _as_weights(p, "p", n, "support point")
    eps = _check_eps(eps)
    c = cost_matrix(pts, pts, p=1) if cost is None else _check_cost(cost, n)

    active = np.flatnonzero(p > 0)
    allowed = np.isfinite(c[active])
    k, cols = np.nonzero(allowed)
    rows = active[k]
    if cols.size > _MAX_VARIABLES:
        raise ValueError(f"the grid has {n} points, so the linear programme has {cols.size} variables "
                         f"(more than {_MAX_VARIABLES}); use a coarser grid (a few hundred points).")
    cij = c[rows, cols]
    a_eq = sparse.csr_array((np.ones(cols.size), (k, np.arange(cols.size))), shape=(active.size, cols.size))
    res = linprog(-f[cols], A_ub=cij[None, :], b_ub=[eps], A_eq=a_eq, b_eq=p[active],
                  bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"the linear programme failed: {res.message}")
    coupling = np.zeros((n, n))
    coupling[rows, cols] = np.maximum(res.x, 0.0)
    return float(-res.fun), coupling, coupling.sum(axis=0)


def _objective(lam: float, eps: float, p, f, c) -> float:
    with np.errstate(invalid="ignore"):
        inner = np.where(np.isfinite(c), f[None, :] - lam * c, -np.inf)
    return float(lam * eps + p @ inner.max(axis=1))


def _breakpoints(f, c) -> np.ndarray:
    """Every kink of :math:`\\lambda \\mapsto \\max_j (f_j - \\lambda c_{ij})` for all rows, plus 0.

    Walks each row's upper envelope from :math:`\\lambda = 0` (the line of largest ``f``, ties
    to the smallest cost) towards :math:`\\lambda = \\infty` (the cheapest line): the next
    line is the one, among the cheaper ones, that overtakes the current one first. All rows
    step together; the loop runs as many times as the longest envelope has pieces.
    """
    n = c.shape[0]
    fin = np.isfinite(c)
    key = np.where(fin, f[None, :], -np.inf)
    best = key.max(axis=1, keepdims=True)
    cur = np.where(key == best, np.where(fin, c, np.inf), np.inf).argmin(axis=1)
    rows = np.arange(n)
    out = [np.zeros(1)]
    live = np.ones(n, dtype=bool)
    while live.any():
        r = rows[live]
        cc, fc = c[r, cur[r]], f[cur[r]]
        cheaper = c[r] < cc[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = np.where(cheaper, (fc[:, None] - f[None, :]) / (cc[:, None] - c[r]), np.inf)
        lmin = lam.min(axis=1)
        more = np.isfinite(lmin)
        out.append(np.maximum(lmin[more], 0.0))
        nxt = np.where(lam == lmin[:, None], c[r], np.inf).argmin(axis=1)
        cur[r[more]] = nxt[more]
        live[r[~more]] = False
    return np.unique(np.concatenate(out))


def dro_dual(p, f, cost, eps) -> tuple[float, float]:
    r"""The dual :math:`\min_{\lambda \ge 0} g(\lambda)` of :func:`dro_primal`, computed exactly.

    :math:`g(\lambda) = \lambda\epsilon + \sum_i p_i \max_j (f_j - \lambda c_{ij})` is convex
    and piecewise linear, with kinks where the maximising :math:`j` of a row changes. The kinks
    are enumerated (each row's upper envelope of the lines :math:`f_j - \lambda c_{ij}`) and
    the minimum found among them by bisection on the sign of the slope, computed from the
    active costs on each linear piece (not from differences of ``g``, which rounding spoils):
    no grid search, no tolerance. Past the last kink the slope is :math:`\epsilon \ge 0`
    (each row's cheapest move is staying put), so a minimiser exists. It equals
    :func:`dro_primal` (LP duality; tested).

    Parameters
    ----------
    p : array-like
        Weights of :math:`P` on the ``n`` support points (a probability vector).
    f : array-like
        Risk at each support point, ``(n,)``.
    cost : array-like
        ``(n, n)`` costs in ``[0, +inf]`` with a zero diagonal (``+inf``: forbidden move), e.g.
        ``cost_matrix(support, support, p=1)`` or :func:`label_preserving_cost`.
    eps : float
        The transport budget (>= 0).

    Returns
    -------
    value : float
        :math:`\min_\lambda g(\lambda)`, the worst-case risk.
    lambda_star : float
        The smallest minimiser: the price of transport (0 once the budget no longer binds).

    Taught in Part 5, section "Distributional robustness on a grid".
    """
    p, f, c, eps = _check_problem(p, f, cost, eps)
    t = _breakpoints(f, c)
    mids = np.append((t[:-1] + t[1:]) / 2, t[-1] + 1.0)  # one point inside each linear piece

    def slope(k: int) -> float:  # g' on the piece [t[k], t[k+1]]: from the costs, no differences
        with np.errstate(invalid="ignore"):
            inner = np.where(np.isfinite(c), f[None, :] - mids[k] * c, -np.inf)
        return eps - float(p @ c[np.arange(c.shape[0]), inner.argmax(axis=1)])

    lo, hi = 0, t.size - 1  # the last piece has slope eps >= 0
    while lo < hi:  # first piece on which g stops decreasing; g is minimal at its left end
        mid = (lo + hi) // 2
        if slope(mid) >= 0:
            hi = mid
        else:
            lo = mid + 1
    return _objective(float(t[lo]), eps, p, f, c), float(t[lo])


def dro_dual_objective(lam, p, f, cost, eps):
    r"""The dual objective :math:`g(\lambda)` of :func:`dro_dual` at given :math:`\lambda`, for plotting.

    Parameters
    ----------
    lam : float or array-like
        One or several values of :math:`\lambda \ge 0`.
    p, f, cost, eps
        As in :func:`dro_dual`.

    Returns
    -------
    float or numpy.ndarray
        :math:`g(\lambda)`, shaped like ``lam``; its minimum is :func:`dro_dual`'s value.

    Taught in Part 5, section "Distributional robustness on a grid".
    """
    p, f, c, eps = _check_problem(p, f, cost, eps)
    lams = _as_float(lam, "lam")
    if not np.isfinite(lams).all() or (lams < 0).any():
        raise ValueError("lam must be finite and >= 0 (the dual variable is a price of transport).")
    out = np.array([_objective(float(x), eps, p, f, c) for x in lams.ravel()]).reshape(lams.shape)
    return float(out) if out.ndim == 0 else out


def worst_case_path(support, p, f, eps_values, *, cost=None) -> tuple[np.ndarray, np.ndarray]:
    r"""The worst-case risk and distribution :math:`Q_\epsilon` for each budget in ``eps_values``.

    Parameters
    ----------
    support, p, f, cost
        As in :func:`dro_primal`.
    eps_values : array-like
        1-D budgets (each >= 0), e.g. ``np.linspace(0, 1, 11)``.

    Returns
    -------
    values : numpy.ndarray
        ``(k,)`` worst-case risks, non-decreasing (and concave) in the budget.
    qs : numpy.ndarray
        ``(k, n)``: row ``i`` is the worst-case :math:`Q` for ``eps_values[i]``; draw it over the
        grid to watch the mass flow towards high risk as the budget grows.

    Taught in Part 5, section "Distributional robustness on a grid".
    """
    eps = _as_vector(eps_values, "eps_values")
    results = [dro_primal(support, p, f, _check_eps(e), cost=cost) for e in eps]
    return np.array([r[0] for r in results]), np.stack([r[2] for r in results])
