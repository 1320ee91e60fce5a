"""Kernel Stein discrepancy (KSD) of a set of draws against exp(-U): bias you can measure
without knowing the answer.

For a target rho = exp(-U)/Z with score s(x) = grad log rho(x) = -grad U(x) (Z cancels, as in
the Fisher divergence of seed eq. 46-48) and a base kernel k, the Langevin-Stein kernel is

    k_p(x, y) = div_x div_y k + <grad_x k, s(y)> + <grad_y k, s(x)> + k(x, y) <s(x), s(y)>,

and E_rho k_p(X, .) = 0. The KSD of a weighted sample {(x_i, w_i)} is

    KSD^2 = sum_ij w_i w_j k_p(x_i, x_j)                   (Gorham & Mackey 2017, eq. 4)

(the V-statistic; ``w_i = 1/n`` for plain draws). With the inverse-multiquadric kernel
k(x, y) = (c + (x-y)^T L (x-y))^beta, c > 0, beta in (-1, 0), the KSD goes to zero exactly when
the draws converge to rho (Gorham & Mackey 2017, Theorem 8), so it detects the bias of an
unadjusted sampler that R-hat cannot see. The formula for k_p is the one of Riabiz et al.
(2022), whose ``stein-thinning`` package is our test reference.

Everything runs in JAX: the n x n kernel matrix is never stored; rows are processed in blocks
(``lax.map``) of about ``2**21`` entries, so memory is O(n) and time O(n^2 d).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..errors import check_choice, check_key, check_positive

PRECONDITIONERS = ("id", "med", "sclmed", "smpcov")
BLOCK_ENTRIES = 2**21  # kernel entries per row block: ~16 MB per float64 temporary


# ---------------------------------------------------------------------------------------
# the Stein kernel
# ---------------------------------------------------------------------------------------
def imq_stein_kernel(x, y, sx, sy, linv, c: float = 1.0, beta: float = -0.5):
    """k_p(x, y) of the IMQ kernel ``(c + r^T L r)^beta``, r = x - y, for one pair of points.

    ``sx``, ``sy`` are the scores grad log rho (= -grad U) at x and y; ``linv`` is L (d, d).
    Term by term (Riabiz et al. 2022, eq. 8 with the IMQ kernel)::

        -4 beta (beta - 1) r^T L^2 r / q^(2 - beta)
        - 2 beta (tr L + <L (sx - sy), r>) / q^(1 - beta) + <sx, sy> / q^(-beta),
        q = c + r^T L r.
    """
    r = x - y
    lr = linv @ r
    q = c + r @ lr
    return (-4.0 * beta * (beta - 1.0) * (lr @ lr) / q ** (2.0 - beta)
            - 2.0 * beta * (jnp.trace(linv) + (sx - sy) @ lr) / q ** (1.0 - beta)
            + (sx @ sy) * q**beta)


@partial(jax.jit, static_argnames=("c", "beta"))
def _pair_kernels(x, y, sx, sy, linv, *, c, beta):
    """k_p(x_i, y_i) for each row i (the linear-time estimate's pairs)."""
    return jax.vmap(imq_stein_kernel, in_axes=(0, 0, 0, 0, None, None, None))(
        x, y, sx, sy, linv, c, beta)


def _kernel_block(x, sx, y, sy, linv, c, beta):
    """k_p between the rows of ``x`` (B, d) and of ``y`` (n, d) -> (B, n), by matrix products
    (the same algebra as [`imq_stein_kernel`][ebm_ppl.diagnostics.stein.imq_stein_kernel]; the points are
    centred by the caller so that
    expanding |x - y|^2 loses no precision that matters)."""
    xl, yl, sxl = x @ linv, y @ linv, sx @ linv
    q = c + jnp.sum(xl * x, 1)[:, None] + jnp.sum(yl * y, 1)[None, :] - 2.0 * xl @ y.T
    q = jnp.maximum(q, c)  # r^T L r >= 0; rounding could make it slightly negative
    rllr = jnp.sum(xl * xl, 1)[:, None] + jnp.sum(yl * yl, 1)[None, :] - 2.0 * xl @ yl.T
    cross = (jnp.sum(sxl * x, 1)[:, None] - sxl @ y.T - xl @ sy.T
             + jnp.sum(sy @ linv * y, 1)[None, :])  # <L (sx - sy), x - y>
    return (-4.0 * beta * (beta - 1.0) * jnp.maximum(rllr, 0.0) / q ** (2.0 - beta)
            - 2.0 * beta * (jnp.trace(linv) + cross) / q ** (1.0 - beta)
            + (sx @ sy.T) * q**beta)


def _kernel_diagonal(s, linv, c, beta):
    """k_p(x_i, x_i) = -2 beta tr(L) / c^(1 - beta) + |s_i|^2 c^beta."""
    return -2.0 * beta * jnp.trace(linv) / c ** (1.0 - beta) + jnp.sum(s * s, 1) * c**beta


def _row_blocks(n: int, block_size: int | None) -> int:
    if block_size is None:
        return int(max(1, min(n, BLOCK_ENTRIES // max(n, 1))))
    return int(check_positive("block_size", block_size, integer=True))


@partial(jax.jit, static_argnames=("c", "beta", "block"))
def _quadratic_forms(x, s, weights, linv, *, c, beta, block):
    """``diag(W^T K W)`` for the Stein kernel matrix K of the points ``x`` with scores ``s``
    and the columns of ``weights`` (n, k), in blocks of ``block`` rows: O(n^2 (d + k)) time,
    O(block * n) memory."""
    n, d = x.shape
    pad = (-n) % block
    xp = jnp.concatenate([x, jnp.zeros((pad, d), x.dtype)])
    sp = jnp.concatenate([s, jnp.zeros((pad, d), s.dtype)])
    wp = jnp.concatenate([weights, jnp.zeros((pad, weights.shape[1]), weights.dtype)])
    nb = (n + pad) // block

    def one(args):
        xb, sb, wb = args
        kb = _kernel_block(xb, sb, x, s, linv, c, beta)
        return jnp.sum(wb * (kb @ weights), 0)

    parts = jax.lax.map(one, (xp.reshape(nb, block, d), sp.reshape(nb, block, d),
                              wp.reshape(nb, block, -1)))
    return jnp.sum(parts, 0)


# ---------------------------------------------------------------------------------------
# preconditioner (the choices of the stein-thinning package, Riabiz et al. 2022, Sec. 2.4)
# ---------------------------------------------------------------------------------------
def _median_sq_distance(x: np.ndarray, m: int = 1000) -> float:
    n = x.shape[0]
    sub = x[np.linspace(0, n - 1, m, dtype=int)] if n > m else x
    i, j = np.triu_indices(sub.shape[0], k=1)
    dist = np.sqrt(np.sum((sub[i] - sub[j]) ** 2, axis=1))
    return float(np.median(dist) ** 2)


def make_preconditioner(x, preconditioner="id") -> np.ndarray:
    """The matrix L of the IMQ kernel ``(c + (x-y)^T L (x-y))^beta`` from the points ``x``.

    ``"id"``: identity; ``"med"``: I / med^2 (med = median pairwise distance of up to 1000
    evenly spaced points); ``"sclmed"``: I log(min(n, 1000)) / med^2; ``"smpcov"``: inverse
    sample covariance; a positive number ell: I / ell (ell is a squared length scale); a (d,)
    array: diag; a (d, d) symmetric positive-definite array: used as is.
    """
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if isinstance(preconditioner, str):
        check_choice("preconditioner", preconditioner, PRECONDITIONERS)
        if preconditioner == "id":
            return np.eye(d)
        if preconditioner == "smpcov":
            cov = np.atleast_2d(np.cov(x, rowvar=False))
            if n < 2 or np.linalg.eigvalsh(cov).min() <= 0:
                raise ValueError("preconditioner='smpcov': the sample covariance is singular "
                                 "(too few distinct draws); use 'med' or 'id'")
            return np.linalg.inv(cov)
        med2 = _median_sq_distance(x)
        if med2 <= 0:
            raise ValueError(f"preconditioner={preconditioner!r}: the median distance between "
                             "draws is 0 (too few distinct draws); use 'id'")
        scale = np.log(min(1000, n)) if preconditioner == "sclmed" else 1.0
        return np.eye(d) * scale / med2
    arr = np.asarray(preconditioner, dtype=np.float64)
    if arr.ndim == 0:
        return np.eye(d) / check_positive("preconditioner", float(arr))
    if arr.shape == (d,):
        if not np.all(np.isfinite(arr) & (arr > 0)):
            raise ValueError("a diagonal preconditioner must be finite and > 0")
        return np.diag(arr)
    if arr.shape == (d, d):
        if not np.allclose(arr, arr.T) or np.linalg.eigvalsh(arr).min() <= 0:
            raise ValueError("a matrix preconditioner must be symmetric positive definite")
        return arr
    raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, a number, a ({d},) or "
                     f"a ({d}, {d}) array; got shape {arr.shape}")


# ---------------------------------------------------------------------------------------
# inputs: draws and scores in the unconstrained space
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SteinInputs:
    """Draws ``x`` and scores ``score`` (= -grad U) as (chain, draw, dim) float64 arrays in the
    space where U is defined (unconstrained for NumPyro models)."""

    x: np.ndarray
    score: np.ndarray
    log_weights: np.ndarray | None = None


def _is_mcmc(obj) -> bool:
    return hasattr(obj, "get_samples") and hasattr(obj, "sampler")


def _flat_potential(potential_fn, example):
    """A potential on flat vectors from a potential on ``example``'s pytree structure."""
    energy = getattr(potential_fn, "energy", None)
    if hasattr(potential_fn, "potential_fn") and hasattr(potential_fn, "dim"):  # an Energy
        return potential_fn.potential_fn
    if energy is not None and hasattr(energy, "potential_fn"):  # a target
        return energy.potential_fn
    _, unravel = ravel_pytree(example)
    return lambda z: potential_fn(unravel(z))


def _as_chains(draws):
    """(chain, draw, dim) flat draws from an array ((n, d), (chain, draw, d) or (n,)) or a dict
    / pytree of (chain, draw, ...) leaves (flattened per draw like ``ravel_pytree``)."""
    if isinstance(draws, dict) or not hasattr(draws, "shape"):
        leaves = jax.tree.leaves(draws)
        if not leaves:
            raise ValueError("draws is empty")
        lead = np.shape(leaves[0])[:2]
        if len(lead) < 2 or any(np.shape(v)[:2] != lead for v in leaves):
            raise ValueError("dict draws must have leaves of shape (chain, draw, ...)")
        cols = jax.tree.map(lambda v: np.asarray(v, np.float64).reshape(*lead, -1), draws)
        # ravel_pytree's order: the pytree's leaf order (sorted dict keys)
        return np.concatenate(jax.tree.leaves(cols), axis=-1), draws
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :, None]
    elif x.ndim == 2:
        x = x[None]
    elif x.ndim != 3:
        raise ValueError(f"draws must have shape (n, dim) or (chain, draw, dim), got {x.shape}")
    return x, None


def _model_inputs(model, draws: dict, model_args, model_kwargs):
    """Unconstrain a NumPyro model's constrained draws with the model's own transforms and
    return flat unconstrained draws with the potential on them."""
    from numpyro.infer.util import unconstrain_fn

    from ..energy import energy_from_model

    energy = energy_from_model(model, *model_args, **model_kwargs)
    sites = list(energy.site_names)
    missing = [s for s in sites if s not in draws]
    if missing:
        raise ValueError(f"draws lack the model's latent sites {missing}; give the constrained "
                         "draws of every latent site (e.g. mcmc.get_samples(group_by_chain=True))")
    params = {s: jnp.asarray(draws[s], jnp.float64) for s in sites}
    lead = np.shape(params[sites[0]])[:2]
    flat = jax.tree.map(lambda v: v.reshape((-1,) + v.shape[2:]), params)
    unc = jax.vmap(lambda p: unconstrain_fn(model, model_args, model_kwargs, p))(flat)
    x = jax.vmap(lambda p: ravel_pytree(p)[0])(unc)
    return np.asarray(x).reshape(*lead, -1), energy.potential_fn


def _mcmc_parts(mcmc):
    sampler = mcmc.sampler
    model = getattr(sampler, "model", None)
    if model is not None:
        return model, None, tuple(getattr(mcmc, "_args", ())), dict(getattr(mcmc, "_kwargs", {}))
    potential = getattr(sampler, "_user_potential", None) or getattr(sampler, "_potential_fn",
                                                                      None)
    if potential is None:
        raise ValueError("cannot find the potential of this MCMC's kernel: pass potential_fn=")
    return None, potential, (), {}


@partial(jax.jit, static_argnums=0)
def _score_batches(potential, flat):
    return jax.lax.map(lambda p: -jax.grad(potential)(p), flat,
                       batch_size=min(1024, flat.shape[0]))


def _scores(potential, x):
    """-grad U at every row of x (chain, draw, d), compiled once per potential, in batches."""
    d = x.shape[-1]
    flat = jnp.asarray(x.reshape(-1, d))
    try:
        s = np.asarray(_score_batches(potential, flat), dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the potential failed on the draws (dim {d}): {err}") from None
    if s.shape != flat.shape:
        raise ValueError(f"grad U has shape {s.shape[1:]} but the draws have dim {d}")
    return s.reshape(x.shape)


def stein_inputs(draws, potential_fn=None, *, model=None, model_args=(), model_kwargs=None,
                 scores=None, log_weights=None) -> SteinInputs:
    """Flat (chain, draw, dim) draws and their scores -grad U from what users have.

    ``draws``: an (n, d) or (chain, draw, d) array, a dict of constrained (chain, draw, ...)
    sites (with ``model=``), a pytree of (chain, draw, ...) leaves (with a ``potential_fn`` of
    that pytree), or a ``numpyro.infer.MCMC`` (its samples, and its model or potential when
    neither is given). ``potential_fn`` may also be an MCMC (its model / potential is used).
    ``scores`` (same shape as the flat draws) skips the gradient evaluation.
    """
    model_kwargs = {} if model_kwargs is None else dict(model_kwargs)
    if _is_mcmc(potential_fn):
        model, potential_fn, model_args, model_kwargs = _mcmc_parts(potential_fn)
    if _is_mcmc(draws):
        mcmc = draws
        draws = mcmc.get_samples(group_by_chain=True)
        if model is None and potential_fn is None and scores is None:
            model, potential_fn, model_args, model_kwargs = _mcmc_parts(mcmc)
    if model is not None:
        if potential_fn is not None:
            raise ValueError("give a potential_fn or a model, not both")
        if not isinstance(draws, dict):
            raise ValueError("with model=, draws must be a dict of constrained (chain, draw, ...) "
                             "sites, e.g. mcmc.get_samples(group_by_chain=True)")
        x, potential = _model_inputs(model, draws, tuple(model_args), model_kwargs)
    else:
        x, tree = _as_chains(draws)
        potential = None
        if potential_fn is not None:
            if not callable(potential_fn):
                raise ValueError(f"potential_fn must be callable, got "
                                 f"{type(potential_fn).__name__}")
            example = (jax.tree.map(lambda v: np.asarray(v, np.float64)[0, 0], tree)
                       if tree is not None else x[0, 0])
            potential = _flat_potential(potential_fn, example)
    if not np.all(np.isfinite(x)):
        raise ValueError("draws contain NaN or inf")
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64).reshape(x.shape)
    elif potential is None:
        raise ValueError("the KSD needs the target: give potential_fn= (U of one flat draw), "
                         "model= (a NumPyro model) or an MCMC, or scores=")
    else:
        s = _scores(potential, x)
    if not np.all(np.isfinite(s)):
        raise ValueError("grad U is not finite at some draws (the sampler diverged?)")
    lw = None
    if log_weights is not None:
        lw = np.asarray(log_weights, dtype=np.float64).reshape(x.shape[:2])
        if np.any(np.isnan(lw)) or not np.any(np.isfinite(lw)):
            raise ValueError("log_weights must be finite (or -inf) with at least one finite")
    return SteinInputs(x=x, score=s, log_weights=lw)


def _standardized(x, s, standardize: bool):
    """Centre the points (the KSD is translation invariant) and, if asked, scale each column
    by its mean absolute deviation as the stein-thinning package does (``x/scl``, ``s*scl``)."""
    loc = x.mean(0)
    if not standardize:
        return x - loc, s
    scl = np.mean(np.abs(x - loc), axis=0)
    if np.min(scl) <= 0:
        raise ValueError("standardize=True: a coordinate has no spread in the draws")
    return (x - loc) / scl, s * scl


# ---------------------------------------------------------------------------------------
# the KSD
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SteinDiscrepancy:
    """A kernel Stein discrepancy.

    Attributes:
        ksd: sqrt(V-statistic) = sqrt(sum_ij w_i w_j k_p(x_i, x_j)) of the pooled draws (the
            value the ``stein-thinning`` package reports); for ``method="linear"``,
            sqrt(max(estimate of KSD^2, 0)).
        ksd_squared_u: the unbiased U-statistic of KSD^2 (the diagonal left out; can be < 0),
            or the linear-time estimate of it.
        se: standard error of ``ksd_squared_u`` for ``method="linear"`` (NaN for exact).
        ksd_chain: per-chain KSD when ``chains="apart"`` (else None).
        n: what was computed.
        dim: See `n`.
        method: See `n`.
        preconditioner: See `n`.
    """

    ksd: float
    ksd_squared_u: float
    se: float
    n: int
    dim: int
    method: str
    ksd_chain: np.ndarray | None = None
    preconditioner: np.ndarray | None = field(default=None, repr=False)

    def __float__(self) -> float:
        return float(self.ksd)


def _normalized_weights(lw, n):
    if lw is None:
        return np.full(n, 1.0 / n)
    w = np.exp(lw - np.max(lw[np.isfinite(lw)]))
    w = np.where(np.isfinite(w), w, 0.0)
    return w / w.sum()


def stein_discrepancy(draws, potential_fn=None, *, model=None, model_args=(), model_kwargs=None,
                      scores=None, log_weights=None, preconditioner="id", c: float = 1.0,
                      beta: float = -0.5, standardize: bool = False, chains: str = "pooled",
                      method: str = "exact", block_size: int | None = None,
                      key=None) -> SteinDiscrepancy:
    """Kernel Stein discrepancy of ``draws`` against rho = exp(-U)/Z (Gorham & Mackey 2017).

    Args:
        draws: (n, d) or (chain, draw, d) array; a dict of constrained sites with ``model=``;
            or a ``numpyro.infer.MCMC`` (then its model or potential is the target).
        potential_fn: U of one flat draw (or of the draws' pytree), an
            [`Energy`][ebm_ppl.energy.Energy], a target from [`ebm_ppl.targets`][ebm_ppl.targets], or an MCMC.
        model: a NumPyro model; the KSD is computed in its
            unconstrained space, after mapping the draws with the model's own transforms.
        model_args: See `model`.
        model_kwargs: See `model`.
        scores: grad log rho at the draws (skips the gradient evaluation).
        log_weights: (n,) or (chain, draw) log importance weights (self-normalized).
        preconditioner: L of the IMQ kernel, see
            [`make_preconditioner`][ebm_ppl.diagnostics.stein.make_preconditioner].
        c: IMQ kernel (c + r^T L r)^beta; c > 0, -1 < beta < 0.
        beta: See `c`.
        standardize: scale each coordinate by its mean absolute deviation first (as the
            ``stein-thinning`` package does by default for thinning).
        chains: ``"pooled"`` (one KSD of all draws) or ``"apart"`` (also one per chain).
        method: ``"exact"`` (O(n^2 d) in blocks, O(n) memory) or ``"linear"`` (n/2 disjoint
            random pairs: an unbiased estimate of KSD^2 with its standard error, O(n d)).
        block_size: rows per block for the exact sum (default: about 2**21 / n).
        key: random key of the pairs for ``method="linear"`` (default key 0).
    """
    check_choice("chains", chains, ("pooled", "apart"))
    check_choice("method", method, ("exact", "linear"))
    c = check_positive("c", c)
    if not -1.0 < float(beta) < 0.0:
        raise ValueError(f"beta must lie in (-1, 0) for a convergence-determining IMQ kernel, "
                         f"got {beta!r}")
    beta = float(beta)
    inp = stein_inputs(draws, potential_fn, model=model, model_args=model_args,
                       model_kwargs=model_kwargs, scores=scores, log_weights=log_weights)
    n_chain, n_draw, d = inp.x.shape
    n = n_chain * n_draw
    x, s = _standardized(inp.x.reshape(n, d), inp.score.reshape(n, d), standardize)
    linv = make_preconditioner(x, preconditioner)
    lw = None if inp.log_weights is None else inp.log_weights.reshape(n)
    w = _normalized_weights(lw, n)
    xj, sj, lj = jnp.asarray(x), jnp.asarray(s), jnp.asarray(linv)
    diag = np.asarray(_kernel_diagonal(sj, lj, c, beta))

    if method == "linear":
        if lw is not None:
            raise ValueError("method='linear' does not take log_weights; use method='exact'")
        if n < 4:
            raise ValueError("method='linear' needs at least 4 draws")
        key = jax.random.key(0) if key is None else check_key(key)
        perm = np.asarray(jax.random.permutation(key, n))[: 2 * (n // 2)].reshape(-1, 2)
        h = np.asarray(_pair_kernels(xj[perm[:, 0]], xj[perm[:, 1]], sj[perm[:, 0]],
                                     sj[perm[:, 1]], lj, c=c, beta=beta))
        est = float(h.mean())
        return SteinDiscrepancy(ksd=float(np.sqrt(max(est, 0.0))), ksd_squared_u=est,
                                se=float(h.std(ddof=1) / np.sqrt(h.size)), n=n, dim=d,
                                method="linear", preconditioner=linv)

    cols = [w]
    if chains == "apart":
        for k in range(n_chain):
            wk = np.zeros(n)
            sl = slice(k * n_draw, (k + 1) * n_draw)
            wk[sl] = _normalized_weights(None if lw is None else lw[sl], n_draw)
            cols.append(wk)
    weights = np.stack(cols, axis=1)
    q = np.asarray(_quadratic_forms(xj, sj, jnp.asarray(weights), lj, c=c, beta=beta,
                                    block=_row_blocks(n, block_size)))
    v = float(q[0])
    # U-statistic: drop the diagonal, renormalize by 1 - sum w_i^2 (= (n-1)/n unweighted)
    denom = 1.0 - float(np.sum(w**2))
    u = (v - float(np.sum(w**2 * diag))) / denom if denom > 0 else np.nan
    per_chain = np.sqrt(np.maximum(q[1:], 0.0)) if chains == "apart" else None
    return SteinDiscrepancy(ksd=float(np.sqrt(max(v, 0.0))), ksd_squared_u=float(u),
                            se=float("nan"), n=n, dim=d, method="exact", ksd_chain=per_chain,
                            preconditioner=linv)
