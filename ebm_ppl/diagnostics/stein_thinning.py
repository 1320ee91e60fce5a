"""Stein thinning (Riabiz, Chen, Cockayne, Swietach, Niederer, Mackey, Oates 2022, JRSS B).

Greedy minimization of the KSD of the selected points: the j-th point is

    pi(j) = argmin_i  k_p(x_i, x_i) / 2 + sum_{j' < j} k_p(x_{pi(j')}, x_i)     (their eq. 5)

over all n candidates (points may be selected again). Each step costs one column of the
Stein kernel matrix, O(n d), so m points cost O(n m d) time and O(n) memory; the loop is one
compiled ``lax.scan``. The defaults (standardized coordinates, IMQ kernel with c = 1,
beta = -1/2, identity preconditioner) are those of the ``stein-thinning`` package, which
selects the same points (our test reference).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import check_positive
from .stein import _kernel_block, _kernel_diagonal, _standardized, make_preconditioner, stein_inputs


@partial(jax.jit, static_argnames=("m", "c", "beta"))
def _greedy(x, s, linv, *, m, c, beta):
    running = _kernel_diagonal(s, linv, c, beta)  # k_p(x_i, x_i) + 2 sum_selected k_p(x_sel, x_i)
    first = jnp.argmin(running)

    def step(carry, _):
        running, last = carry
        col = _kernel_block(x[last][None], s[last][None], x, s, linv, c, beta)[0]
        running = running + 2.0 * col
        nxt = jnp.argmin(running)
        return (running, nxt), nxt

    _, rest = jax.lax.scan(step, (running, first), None, length=m - 1)
    return jnp.concatenate([first[None], rest])


def stein_thin(draws, potential_fn=None, num_points: int = 100, *, model=None, model_args=(),
               model_kwargs=None, scores=None, standardize: bool = True, preconditioner="id",
               c: float = 1.0, beta: float = -0.5, var_name: str = "x"):
    """Select ``num_points`` draws that best represent rho = exp(-U)/Z (Stein thinning).

    ``draws``/``potential_fn``/``model``/``scores`` are as in
    [`stein_discrepancy`][ebm_ppl.diagnostics.stein_discrepancy] (chains are pooled in chain-major order;
    with a NumPyro model the selection is made in its unconstrained space). Returns a small
    ArviZ ``DataTree``: ``posterior`` with one chain of the selected draws (the user's
    constrained sites when ``draws`` is a dict or an MCMC, else ``var_name``), and
    ``sample_stats`` with ``index`` (the position of each selected draw in the pooled draws;
    repeats are possible) and ``ksd`` (the KSD of the first j selected points, V-statistic),
    plus ``attrs`` ``{"num_points", "preconditioner"}``.
    """
    import arviz as az

    from .stein import _is_mcmc

    num_points = check_positive("num_points", num_points, integer=True)
    inp = stein_inputs(draws, potential_fn, model=model, model_args=model_args,
                       model_kwargs=model_kwargs, scores=scores)
    n_chain, n_draw, d = inp.x.shape
    n = n_chain * n_draw
    x, s = _standardized(inp.x.reshape(n, d), inp.score.reshape(n, d), standardize)
    linv = make_preconditioner(x, preconditioner)
    idx = np.asarray(_greedy(jnp.asarray(x), jnp.asarray(s), jnp.asarray(linv), m=num_points,
                             c=float(c), beta=float(beta)))
    # running KSD of the selection: sqrt(sum_{j,j'<=J} k_p) / J
    xs, ss = jnp.asarray(x[idx]), jnp.asarray(s[idx])
    kmat = np.asarray(_kernel_block(xs, ss, xs, ss, jnp.asarray(linv), float(c), float(beta)))
    cum = np.cumsum(np.cumsum(kmat, 0), 1)[np.arange(num_points), np.arange(num_points)]
    ksd = np.sqrt(np.maximum(cum, 0.0)) / np.arange(1, num_points + 1)

    source = draws.get_samples(group_by_chain=True) if _is_mcmc(draws) else draws
    if isinstance(source, dict):
        posterior = {}
        for k, v in source.items():
            v = np.asarray(v)
            posterior[k] = v.reshape((n,) + v.shape[2:])[idx][None]
    else:
        posterior = {var_name: inp.x.reshape(n, d)[idx][None]}
    dt = az.from_dict({"posterior": posterior,
                       "sample_stats": {"index": idx[None], "ksd": ksd[None]}})
    dt.attrs["num_points"] = num_points
    dt.attrs["preconditioner"] = str(preconditioner)
    return dt
