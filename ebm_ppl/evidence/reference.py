"""Automatic reference: a Gaussian mixture over every mode a multi-start optimization finds.

A Laplace approximation at one mode, however widened, misses the other modes of a multimodal
energy and the coupling of a strongly correlated one. Here L-BFGS (optax) runs from
``num_starts`` points drawn from N(center, init_scale^2 I); distinct local minima m_k get a
Gaussian N(m_k, widen^2 H_k^{-1}) (variances capped at init_scale^2; a minimum narrower than
``min_var``, default (1e-3 init_scale)^2, e.g. the neck of a funnel, is no Laplace mode and
is left out, and so is a "minimum" flat in some direction, where the gradient merely vanished),
weighted by their Laplace evidence exp(-U(m_k)) det(H_k)^{-1/2}
(floored so that no found mode is starved), plus a *defensive* Gaussian with the mixture's
own mean and covariance (spanning every mode, weight ``defensive_weight``; with one mode it
would be that mode's Gaussian, so a single Gaussian is used); with no mode found,
the reference is N(center, init_scale^2 I). The result
is a normalized NumPyro distribution with an exact ``log_prob``: annealing from it stays exact
whatever it looks like; a good one only lowers the variance.

When no minimum qualifies (an energy unbounded below, or whose only minima are needles, like
Neal's funnel), the API runs a short *pilot* annealing from the broad Gaussian and
[`pilot_reference`][ebm_ppl.evidence.reference.pilot_reference] fits a diagonal Gaussian mixture (EM,
[`fit_gaussian_mixture`][ebm_ppl.evidence.reference.fit_gaussian_mixture]) to
its weighted walkers, with a multivariate Cauchy of the broad Gaussian's location and scale as
the defensive component (its tails reach what the pilot's walkers did not). Several
components follow a shape no single Gaussian does: on the funnel, one settles in the neck (small
x-scales at low v), another in the bulk; the Cauchy reaches the mouth.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from jax.scipy.special import logsumexp
from numpyro.distributions import constraints

from ..energy import Energy
from .engine import _as_partial

FLAT_CURVATURE = 1e-6  # min Hessian eigenvalue x init_scale^2 below which a minimum is flat

__all__ = ["auto_reference", "find_modes", "fit_gaussian_mixture", "pilot_reference"]


@functools.lru_cache(maxsize=None)
def _mixture_class():
    class GaussianMixtureReference(dist.Distribution):
        """sum_k w_k N(m_k, C_k) on R^d with precomputed inverse Cholesky factors, so that
        ``log_prob`` is matrix-vector products (NumPyro's MultivariateNormal solves a
        triangular system per call, which costs more than a cheap energy's gradient)."""

        arg_constraints = {}
        support = constraints.real_vector
        pytree_data_fields = ("loc", "chol", "inv_chol", "log_weights", "log_norm")

        def __init__(self, loc, cov, weights):
            loc = jnp.asarray(loc)
            chol = jnp.linalg.cholesky(jnp.asarray(cov))
            k, d = loc.shape
            self.loc, self.chol = loc, chol
            self.inv_chol = jax.scipy.linalg.solve_triangular(
                chol, jnp.broadcast_to(jnp.eye(d), (k, d, d)), lower=True)
            w = jnp.asarray(weights)
            self.log_weights = jnp.log(w / jnp.sum(w))
            self.log_norm = (-0.5 * d * jnp.log(2 * jnp.pi)
                             - jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1))
            super().__init__(batch_shape=(), event_shape=(d,))

        def log_prob(self, value):
            diff = value[..., None, :] - self.loc
            z = jnp.einsum("kij,...kj->...ki", self.inv_chol, diff)
            return logsumexp(self.log_weights + self.log_norm - 0.5 * jnp.sum(z * z, -1), -1)

        def sample(self, key, sample_shape=()):
            k_c, k_z = jax.random.split(key)
            comp = jax.random.categorical(k_c, self.log_weights, shape=sample_shape)
            z = jax.random.normal(k_z, tuple(sample_shape) + self.event_shape, self.loc.dtype)
            return self.loc[comp] + jnp.einsum("...ij,...j->...i", self.chol[comp], z)

    return GaussianMixtureReference


@functools.lru_cache(maxsize=None)
def _tailed_class():
    class TailedMixtureReference(dist.Distribution):
        """(1 - w) mixture + w t_df(m, L L^T): a Gaussian mixture with a multivariate Student-t
        defensive component, whose polynomial tails reach what no Gaussian fitted to a pilot
        run does (a funnel's mouth). log t = log G((df+d)/2) - log G(df/2) - d/2 log(df pi)
        - log|L| - (df+d)/2 log(1 + |L^{-1}(x - m)|^2 / df)."""

        arg_constraints = {}
        support = constraints.real_vector
        pytree_data_fields = ("mixture", "loc", "chol", "inv_chol", "df", "log_w", "log_norm")

        def __init__(self, mixture, loc, chol, df, weight):
            self.mixture = mixture
            self.loc, self.chol = jnp.asarray(loc), jnp.asarray(chol)
            d = self.loc.shape[-1]
            self.inv_chol = jax.scipy.linalg.solve_triangular(self.chol, jnp.eye(d), lower=True)
            self.df = jnp.asarray(df, self.loc.dtype)
            self.log_w = jnp.log(jnp.asarray([1.0 - weight, weight], self.loc.dtype))
            self.log_norm = (jax.scipy.special.gammaln(0.5 * (self.df + d))
                             - jax.scipy.special.gammaln(0.5 * self.df)
                             - 0.5 * d * jnp.log(self.df * jnp.pi)
                             - jnp.sum(jnp.log(jnp.diagonal(self.chol))))
            super().__init__(batch_shape=(), event_shape=(d,))

        def _t_log_prob(self, value):
            z = (value - self.loc) @ self.inv_chol.T
            d = self.loc.shape[-1]
            return self.log_norm - 0.5 * (self.df + d) * jnp.log1p(jnp.sum(z * z, -1) / self.df)

        def log_prob(self, value):
            return jnp.logaddexp(self.log_w[0] + self.mixture.log_prob(value),
                                 self.log_w[1] + self._t_log_prob(value))

        def sample(self, key, sample_shape=()):
            k_c, k_m, k_z, k_g = jax.random.split(key, 4)
            shape = tuple(sample_shape)
            tail = jax.random.bernoulli(k_c, jnp.exp(self.log_w[1]), shape)
            z = jax.random.normal(k_z, shape + self.event_shape, self.loc.dtype)
            g = jax.random.gamma(k_g, 0.5 * self.df, shape, self.loc.dtype) / (0.5 * self.df)
            g = jnp.maximum(g, jnp.finfo(g.dtype).tiny)  # a Gamma(1/2) draw can underflow
            t = self.loc + (z @ self.chol.T) / jnp.sqrt(g)[..., None]
            return jnp.where(tail[..., None], t, self.mixture.sample(k_m, sample_shape))

    return TailedMixtureReference


GRAD_TOL = 1e-4  # a start has converged when |grad U| <= GRAD_TOL max(1, |U|) sqrt(d)


def _converged(value, grad):
    return jnp.linalg.norm(grad) <= GRAD_TOL * jnp.maximum(1.0, jnp.abs(value)) * jnp.sqrt(
        grad.shape[-1])


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _lbfgs_many(potential_fn, starts, max_iter):
    """L-BFGS from every start at once, until all have converged or ``max_iter`` iterations;
    a converged start is frozen. Returns end points, values, gradient norms and the potential
    evaluations computed per start.
    ``potential_fn`` is a ``Partial`` (a pytree: its arrays, e.g. a path's data, are traced).

    Under ``vmap`` every start runs each line search as long as the longest one, so a frozen
    start whose line search cannot progress (it sits at its minimum) would make every start
    take optax's maximum of line-search steps at every iteration (41 evaluations instead of 3
    per iteration on the hard mixture). A converged start therefore enters the update with a
    zero gradient: a zero direction, accepted at the first trial; its result is discarded
    anyway. Evaluations are counted as computed: per iteration two per step of the longest
    line search, plus one (optax's zoom line search; tests check the count against a
    counting callback), then one at the end."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(potential_fn)

    def step(x, state):
        value, grad = value_and_grad(x, state=state)
        done = _converged(value, grad)
        grad = jnp.where(done, 0.0, grad)
        updates, new_state = opt.update(grad, state, x, value=value, grad=grad,
                                        value_fn=potential_fn)
        x_new = optax.apply_updates(x, updates)
        steps = optax.tree_utils.tree_get(new_state, "num_linesearch_steps")
        keep = done | ~jnp.all(jnp.isfinite(x_new))
        new_state = jax.tree.map(lambda a, b: jnp.where(keep, a, b), state, new_state)
        return jnp.where(keep, x, x_new), new_state, done, steps

    def body(carry):
        i, x, state, _, evals = carry
        x, state, done, steps = jax.vmap(step)(x, state)
        return i + 1, x, state, done, evals + (2 * jnp.max(steps) + 1).astype(evals.dtype)

    def cond(carry):
        i, _, _, done, _ = carry
        return (i < max_iter) & ~jnp.all(done)

    zero = jnp.zeros((), jnp.int32)
    init = (zero, starts, jax.vmap(opt.init)(starts), jnp.zeros(starts.shape[0], bool), zero)
    _, x, _, _, evals = jax.lax.while_loop(cond, body, init)
    value, grad = jax.vmap(jax.value_and_grad(potential_fn))(x)
    return x, value, jnp.linalg.norm(grad, axis=-1), evals + 1


@functools.partial(jax.jit, static_argnames=("potential_fn",))
def _hessian(potential_fn, x):
    return jax.hessian(potential_fn)(x)


def find_modes(potential_fn, starts, *, max_iter: int = 200):
    """Run L-BFGS (optax) from each row of ``starts`` until every start has converged (or
    ``max_iter`` iterations); returns (points, values, gradient norms, gradient evaluations),
    the last counting every evaluation of the potential that the vectorized search computed
    (each as a gradient, every start paying for the longest line search)."""
    xs, values, gnorms, evals = _lbfgs_many(_as_partial(potential_fn), starts, int(max_iter))
    return (np.asarray(xs), np.asarray(values), np.asarray(gnorms), int(evals) * len(starts))


def usable_minima(xs, values, gnorms):
    """Which of `find_modes`' end points count as minima (finite, and converged when any
    converged: an unconverged end point is not a mode, a narrow basin still counts), and
    every end point's index ordered by value, lowest first (the others last)."""
    ok = np.isfinite(values) & np.all(np.isfinite(xs), axis=1)
    converged = ok & (gnorms <= GRAD_TOL * np.maximum(1.0, np.abs(values))
                      * np.sqrt(xs.shape[-1]))
    if converged.any():
        ok = converged
    return ok, np.argsort(np.where(ok, values, np.inf))


def auto_reference(energy: Energy, key, *, num_starts: int = 256, init_scale: float = 3.0,
                   center=None, widen: float = 1.2, defensive_weight: float = 0.1,
                   min_var: float | None = None, max_iter: int = 100):
    """Build the mixture reference described in the module docstring.

    Returns ``(reference, info)``; ``info`` records the modes, their weights and standard
    deviations, the defensive component and the gradient evaluations spent.
    """
    d = energy.dim
    center = np.zeros(d) if center is None else np.broadcast_to(np.asarray(center, float), (d,))
    starts = jnp.asarray(center) + init_scale * jax.random.normal(key, (int(num_starts), d))
    xs, values, gnorms, grads = find_modes(energy.potential_fn, starts, max_iter=max_iter)
    ok, order = usable_minima(xs, values, gnorms)
    max_var = init_scale**2
    min_var = (1e-3 * init_scale) ** 2 if min_var is None else min_var
    modes: list[np.ndarray] = []
    covs: list[np.ndarray] = []
    kept_h: list[np.ndarray] = []
    log_ev: list[float] = []
    rejected = flat = 0
    for i in order:
        if not ok[i]:
            continue
        x = xs[i]
        if any(float((x - m) @ h @ (x - m)) < 9.0 for m, h in zip(modes, kept_h)):
            continue  # within 3 Mahalanobis units of a mode already kept
        h = np.asarray(_hessian(energy.potential_fn, jnp.asarray(x)))
        grads += d
        h = 0.5 * (h + h.T)
        if not np.all(np.isfinite(h)):
            continue
        lam, vec = np.linalg.eigh(h)
        if lam.min() <= 0 and gnorms[i] > 1e-3:
            continue  # not a minimum the optimizer converged to
        if lam.max() * min_var > widen**2:
            rejected += 1  # narrower than min_var (e.g. the neck of a funnel): no Laplace there
            continue
        if lam.min() * max_var < FLAT_CURVATURE:
            # a direction ~1000x broader than the starts: no confining mode, just a flat region
            # where the gradient vanished (a funnel's mouth in float32 once qualified)
            flat += 1
            continue
        lam_pos = np.maximum(lam, 1.0 / max_var)
        var = np.clip(widen**2 / lam_pos, min_var, max_var)
        modes.append(x)
        kept_h.append((vec * lam_pos) @ vec.T)
        covs.append((vec * var) @ vec.T)
        log_ev.append(-values[i] - 0.5 * np.sum(np.log(lam_pos)))
    info = dict(kind="auto", num_starts=int(num_starts), init_scale=float(init_scale),
                center=center, num_gradient_evals=int(grads))
    if modes:
        log_ev_arr = np.asarray(log_ev)
        w = np.exp(log_ev_arr - log_ev_arr.max())
        w = w / w.sum()
        w = np.maximum(w, 0.1 / len(w))  # floor: a found mode always gets walkers
        w = w / w.sum()
    if len(modes) > 1:
        m = np.stack(modes)
        mean = w @ m
        diff = m - mean
        cov = np.einsum("k,kij->ij", w, np.stack(covs)) + np.einsum("k,ki,kj->ij", w, diff, diff)
        comps_mean, comps_cov = [mean] + modes, [cov] + covs
        defensive, mode_weights = defensive_weight, (1.0 - defensive_weight) * w
        weights = np.concatenate([[defensive], mode_weights])
    elif modes:  # one mode: the defensive Gaussian would be that mode's own, so it is left out
        comps_mean, comps_cov, weights, mode_weights, defensive = modes, covs, w, w, 0.0
    else:
        comps_mean, comps_cov, weights = [center], [np.eye(d) * max_var], np.ones(1)
        mode_weights, defensive = np.zeros(0), 1.0
    reference = _mixture_class()(np.stack(comps_mean), np.stack(comps_cov), weights)
    info.update(modes=np.asarray(modes).reshape(-1, d), mode_weights=mode_weights,
                mode_stds=np.asarray([np.sqrt(np.diag(c)) for c in covs]).reshape(-1, d),
                defensive_weight=float(defensive),
                rejected_narrow_minima=rejected, rejected_flat_minima=flat)
    return reference, info


def _weighted_median(x, w):
    """Per-column weighted median of ``x`` (n, d), weights ``w`` (n,) summing to 1."""
    order = np.argsort(x, axis=0)
    rows = np.argmax(np.cumsum(w[order], axis=0) >= 0.5, axis=0)
    cols = np.arange(x.shape[1])
    return x[order[rows, cols], cols]


def fit_gaussian_mixture(x, weights, num_components: int, *, seed: int = 0,
                         num_iterations: int = 200, var_floor=None):
    """Weighted EM for a mixture of ``num_components`` diagonal Gaussians.

    Starts from k-means++ seeding (``seed`` fixes it); ``var_floor`` (per coordinate) keeps a
    component from collapsing onto a few points. Returns ``(weights, means, variances)``.
    """
    x = np.asarray(x, float)
    w = np.asarray(weights, float)
    w = w / w.sum()
    n, d = x.shape
    k = int(min(num_components, n))
    rng = np.random.default_rng(seed)
    scale = np.sqrt(np.maximum(w @ (x - w @ x) ** 2, 1e-300))
    z = x / scale
    centers = [z[rng.choice(n, p=w)]]
    for _ in range(k - 1):  # k-means++: far from the chosen centers, in proportion to weight
        d2 = np.min([np.sum((z - c) ** 2, 1) for c in centers], axis=0) * w
        centers.append(z[rng.choice(n, p=d2 / d2.sum())] if d2.sum() > 0 else z[rng.choice(n)])
    means = np.stack(centers) * scale
    floor = np.full(d, 1e-12) if var_floor is None else np.asarray(var_floor, float)
    var = np.tile(np.maximum(scale**2, floor), (k, 1))
    pi = np.full(k, 1.0 / k)
    prev = -np.inf
    for _ in range(int(num_iterations)):
        lp = np.log(pi) - 0.5 * np.sum(
            (x[:, None, :] - means) ** 2 / var + np.log(2 * np.pi * var), axis=-1)
        top = lp.max(axis=1, keepdims=True)
        norm = top[:, 0] + np.log(np.exp(lp - top).sum(axis=1))
        r = np.exp(lp - norm[:, None]) * w[:, None]  # weighted responsibilities
        nk = np.maximum(r.sum(axis=0), 1e-300)
        pi = np.maximum(nk, 1e-12)
        pi = pi / pi.sum()
        means = (r.T @ x) / nk[:, None]
        var = np.maximum((r.T @ x**2) / nk[:, None] - means**2, floor)
        ll = float(w @ norm)
        if ll - prev < 1e-9 * max(1.0, abs(ll)):
            break
        prev = ll
    return pi, means, var


PILOT_KIND = "auto (pilot)"  # reference_info["kind"] of a reference fitted to a pilot run
TAIL_DF = 1.0  # the pilot reference's defensive component: a multivariate Cauchy
PILOT_DEFENSIVE_WEIGHT = 0.25


def fitted_to_pilot(reference_info) -> bool:
    """Whether a run's reference was fitted to a pilot run (`pilot_reference`)."""
    return reference_info.get("kind") == PILOT_KIND


def pilot_reference(positions, log_weights, broad, *, num_components: int = 4,
                    defensive_weight: float = PILOT_DEFENSIVE_WEIGHT,
                    tail_df: float | None = TAIL_DF, seed: int = 0):
    """Reference from a pilot run's weighted walkers: ``(1 - w) GMM + w t_df(broad)``.

    The mixture's components are diagonal Gaussians fitted by
    [`fit_gaussian_mixture`][ebm_ppl.evidence.reference.fit_gaussian_mixture];
    their variances are floored at (1e-3 x the walkers' robust scale)^2, the robust scale being
    1.4826 x the weighted median absolute deviation per coordinate. The defensive component
    keeps every region reachable: a multivariate Student-t with ``tail_df`` degrees of freedom
    (default 1, a Cauchy) and the location and scale of ``broad`` (the one-component fallback
    of [`auto_reference`][ebm_ppl.evidence.reference.auto_reference]), whose polynomial tails
    reach what the pilot's walkers did not (on Neal's funnel the mouth, v > 2, where x spreads
    as e^{v/2}: with the Gaussian ``broad`` instead, ``tail_df=None``, the mouth held 2% of
    the weight instead of 9% and log Z came out 0.13 low on average, against 0.06 with the
    Cauchy; ``benchmarks/RESULTS.md``). Returns ``(reference, fitted)`` with
    ``fitted = dict(weights, means, stds, defensive_weight, defensive_df)``.
    """
    x = np.asarray(positions, float)
    lw = np.asarray(log_weights, float)
    ok = np.isfinite(lw) & np.all(np.isfinite(x), axis=1)
    if not ok.any():
        raise ValueError("the pilot run has no walker with a finite weight")
    if not 0.0 < defensive_weight < 1.0:
        raise ValueError(f"defensive_weight must lie in (0, 1), got {defensive_weight!r}")
    if tail_df is not None and not tail_df > 0:
        raise ValueError(f"tail_df must be positive (or None for a Gaussian), got {tail_df!r}")
    x, lw = x[ok], lw[ok]
    w = np.exp(lw - lw.max())
    w = w / w.sum()
    med = _weighted_median(x, w)
    mad = 1.4826 * _weighted_median(np.abs(x - med), w)
    robust = np.where(mad > 0, mad, np.sqrt(np.maximum(w @ (x - med) ** 2, 1e-300)))
    pi, means, var = fit_gaussian_mixture(x, w, num_components, seed=seed,
                                          var_floor=(1e-3 * robust) ** 2 + 1e-300)
    covs = np.stack([np.diag(v) for v in var])
    broad_chol = np.asarray(broad.chol[0])
    if tail_df is None:
        reference = _mixture_class()(
            np.concatenate([np.asarray(broad.loc[:1]), means]),
            np.concatenate([(broad_chol @ broad_chol.T)[None], covs]),
            np.concatenate([[defensive_weight], (1.0 - defensive_weight) * pi]))
    else:
        reference = _tailed_class()(_mixture_class()(means, covs, pi), np.asarray(broad.loc[0]),
                                    broad_chol, tail_df, defensive_weight)
    return reference, dict(weights=pi, means=means, stds=np.sqrt(var),
                           defensive_weight=float(defensive_weight),
                           defensive_df=None if tail_df is None else float(tail_df))
