"""Bridge sampling: the evidence of a NumPyro model from posterior draws you already have.

Given draws of the posterior (any NumPyro sampler: NUTS, ours) the draws are mapped to
NumPyro's unconstrained space with the model's own transforms, where the unnormalized
posterior is ``q(z) = p(y | theta(z)) p(theta(z)) |J(z)|`` (minus NumPyro's potential energy,
the one NUTS samples). The first half of every chain fits a proposal
``g``; the second half (``N1`` draws) and ``N2 = N1`` draws of ``g`` enter the iterative
bridge estimator of Meng & Wong (1996, Statistica Sinica), with the optimal bridge function,
as written in the tutorial of Gronau et al. (2017, J. Math. Psychol.):

    r_{t+1} = [1/N2 sum_j l2_j / (s1 l2_j + s2 r_t)] / [1/N1 sum_i 1 / (s1 l1_i + s2 r_t)]

with ``l1_i = q(z_i) / g(z_i)`` on the posterior draws, ``l2_j = q(z~_j) / g(z~_j)`` on the
proposal draws, ``s1 = N1_eff / (N1_eff + N2)``, ``s2 = 1 - s1`` and ``N1_eff`` the median
effective sample size of the posterior draws (Gronau et al.); ``r -> Z = p(y)``.

Proposals (``method``): "normal", the Gaussian with the fit half's mean and covariance; or
"warp3" (Meng & Schilling 2002; Gronau et al. 2017, sec. 2.4), which matches the first three
moments by bridging the symmetrized density ``|L| [q(m + L eta) + q(m - L eta)] / 2`` to a
standard normal in ``eta`` (``m``, ``L L^T``: the fit half's mean and covariance), the choice
for skewed posteriors.

Error (Fruhwirth-Schnatter 2004, Econometrics J., sec. 3), the relative mean-squared error of
``Z``, which is the variance of ``log Z`` to first order:

    RE^2 = Var_g[f1] / (N2 E_g[f1]^2) + Var_post[f2] / (ESS(f2) E_post[f2]^2)

with ``f1 = p / (s1 p + s2 g)`` on the proposal draws (independent), ``f2 = g / (s1 p + s2 g)``
on the posterior draws (``p = q / Z``) and ``ESS(f2) = N1 / rho_f2(0)``, the effective sample
size of the autocorrelated sequence ``f2`` over the chains (NumPyro's, which estimates the
normalized spectral density at frequency zero from the autocorrelations): correlated draws
widen the error instead of being treated as independent.
"""

from __future__ import annotations

import os
import time
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer import MCMC
from numpyro.infer.util import potential_energy, unconstrain_fn

from ..errors import check_choice, check_key, check_model_data, check_positive
from ..persist import load_result, register, save_result
from .fingerprint import observed_fingerprint

__all__ = ["bridge_sampling", "BridgeResult", "bridge_estimate", "bridge_relative_mse",
           "posterior_draws", "BRIDGE_METHODS"]

BRIDGE_METHODS = ("normal", "warp3")
MIN_DRAWS = 200          # total draws; half fit the proposal, half enter the bridge
MIN_ESS = 100            # effective draws of the bridge function below which the error is rough
RHAT_NOTE, RHAT_FAIL = 1.01, 1.05
SKEW_NOTE = 1.0          # |marginal skewness| above which "warp3" is suggested


@register
@dataclass(frozen=True)
class BridgeResult:
    """log p(data) by bridge sampling, with the same interface as
    [`EvidenceResult`][ebm_ppl.evidence.EvidenceResult] (``log_z``, ``log_z_se``, ``error``, ``messages``,
    ``to_arviz``, ``save``/``load``).

    Attributes:
        log_z: the estimate and its standard error ``sqrt(RE^2)`` (Fruhwirth-
            Schnatter 2004, autocorrelation included).
        log_z_se: See `log_z`.
        method: "bridge (normal)" or "bridge (warp3)".
        samples: the constrained draws of the latent sites that entered the bridge (the
            second half of every chain), ``(chain, draw, ...)``.
        log_ratio_posterior: ``log l1 = log q - log g`` on those draws, ``(chain, draw)``.
        log_ratio_proposal: ``log l2`` on the proposal draws.
        num_draws: ``N1``, the draws that fitted the proposal,
            ``N2``.
        num_fit_draws: See `num_draws`.
        num_proposal: See `num_draws`.
        ess: effective sample size of ``f2`` (the posterior side of the error); ``ess_draws``
            the median ESS of the draws' coordinates (``N1_eff`` in ``s1``).
        rhat: the largest R-hat of the unconstrained coordinates over all draws.
        relative_mse_proposal: the two terms of ``RE^2``.
        relative_mse_posterior: See `relative_mse_proposal`.
        num_iterations: the iteration of the bridge estimator.
        converged: See `num_iterations`.
        log_z_trace: See `num_iterations`.
        data_fingerprint: hash of the observed data (see `fingerprint`).
        reliable: False when R-hat, too few effective draws or a non-converged iteration say
            the error bar is not to be trusted (the reasons are in ``messages``).
    """

    log_z: float
    log_z_se: float
    method: str
    samples: Any
    log_ratio_posterior: np.ndarray
    log_ratio_proposal: np.ndarray
    num_draws: int
    num_fit_draws: int
    num_proposal: int
    ess: float
    ess_draws: float
    rhat: float
    relative_mse_proposal: float
    relative_mse_posterior: float
    num_iterations: int
    converged: bool
    log_z_trace: np.ndarray = field(default_factory=lambda: np.zeros(0))
    data_fingerprint: str | None = None
    wall_time: float = 0.0
    messages: tuple = ()
    reliable: bool = True

    @property
    def error(self) -> float:
        """The error bar comparisons use: ``log_z_se`` (bridge sampling has no annealing bias
        term; its bias is O(1/N) and inside the relative MSE)."""
        return self.log_z_se

    def __str__(self) -> str:
        chains = np.asarray(self.log_ratio_posterior).shape
        lines = [
            f"BridgeResult(method={self.method!r}, draws {chains[0]} x {chains[1]} in the "
            f"bridge, {self.num_fit_draws} fitted the proposal, {self.num_proposal} proposal)",
            f"  log Z            = {self.log_z:.5f} +- {self.log_z_se:.5f}",
            f"  relative MSE     = {self.relative_mse_proposal:.3g} (proposal) + "
            f"{self.relative_mse_posterior:.3g} (posterior, ESS {self.ess:.0f})",
            f"  R-hat max        = {self.rhat:.3f}   iterations {self.num_iterations} "
            f"({'converged' if self.converged else 'NOT converged'})   "
            f"wall time {self.wall_time:.2f} s",
        ]
        lines += [f"  note: {m}" for m in self.messages]
        return "\n".join(lines)

    def to_arviz(self):
        """An ArviZ DataTree: ``posterior`` holds the draws that entered the bridge,
        ``sample_stats`` their ``log_bridge_ratio``; log Z and its error in the attributes."""
        import arviz as az

        post = {k: np.asarray(v) for k, v in self.samples.items()}
        dt = az.from_dict({"posterior": post,
                           "sample_stats": {"log_bridge_ratio":
                                            np.asarray(self.log_ratio_posterior)}})
        attrs = dict(log_z=self.log_z, log_z_se=self.log_z_se, method=self.method,
                     ess=self.ess, rhat=self.rhat, reliable=int(self.reliable))
        if self.data_fingerprint is not None:
            attrs["data_fingerprint"] = self.data_fingerprint
        dt.attrs.update(attrs)
        return dt

    def save(self, path):
        """Write this result to a netCDF file (see
        [`EvidenceResult.save`][ebm_ppl.evidence.result.EvidenceResult.save])."""
        return save_result(self, path, arviz_tree=self.to_arviz())

    @classmethod
    def load(cls, path) -> "BridgeResult":
        """Read a result written by `save`, bit for bit."""
        return load_result(path, cls)


# -- the estimator and its error (pure numpy) ------------------------------------------------

def _log_mean_exp(a) -> float:
    a = np.asarray(a, float)
    top = np.max(a)
    if not np.isfinite(top):
        return float(top)
    return float(top + np.log(np.mean(np.exp(a - top))))


def bridge_estimate(log_l1, log_l2, s1: float, *, tol: float = 1e-10,
                    max_iterations: int = 1000):
    """The iterative bridge estimator (module docstring; Meng & Wong 1996) in log space.

    Args:
        log_l1: ``log q - log g`` at the posterior draws (any shape).
        log_l2: ``log q - log g`` at the proposal draws.
        s1: ``N1_eff / (N1_eff + N2)``; ``s2 = 1 - s1``.

    Returns ``(log_r, iterations, converged, trace)``.
    """
    l1 = np.ravel(np.asarray(log_l1, float))
    l2 = np.ravel(np.asarray(log_l2, float))
    shift = float(np.median(l1[np.isfinite(l1)])) if np.any(np.isfinite(l1)) else 0.0
    a1, a2 = l1 - shift, l2 - shift
    ls1, ls2 = np.log(s1), np.log1p(-s1)
    log_r = _log_mean_exp(a2)  # importance sampling from g: a good start
    if not np.isfinite(log_r):
        log_r = 0.0
    trace = []
    for it in range(1, max_iterations + 1):
        num = _log_mean_exp(a2 - np.logaddexp(ls1 + a2, ls2 + log_r))
        den = _log_mean_exp(-np.logaddexp(ls1 + a1, ls2 + log_r))
        new = num - den
        trace.append(new + shift)
        if abs(new - log_r) < tol:
            return new + shift, it, True, np.asarray(trace)
        log_r = new
    return log_r + shift, max_iterations, False, np.asarray(trace)


def _ess_mean(x_chains) -> float:
    """Effective sample size of the mean of ``x`` with shape (chain, draw): NumPyro's
    (Geyer's initial monotone sequence over the chains' autocorrelations, as Stan and ArviZ
    compute it; already imported, where ArviZ costs seconds to import)."""
    x = np.asarray(x_chains, float)
    if np.var(x) == 0:
        return float(x.size)
    return float(effective_sample_size(x))


def bridge_relative_mse(log_l1_chains, log_l2, log_r: float, s1: float):
    """Fruhwirth-Schnatter (2004) relative MSE of the bridge estimate (module docstring).

    Args:
        log_l1_chains: ``log q - log g`` at the posterior draws, shape (chain, draw): the
            autocorrelation along ``draw`` enters through the ESS of ``f2``.
        log_l2: the same at the independent proposal draws.
        log_r: the bridge estimate of log Z.

    Returns ``(re2_proposal, re2_posterior, ess_f2)``.
    """
    s2 = 1.0 - s1
    l1 = np.asarray(log_l1_chains, float) - log_r
    l2 = np.ravel(np.asarray(log_l2, float)) - log_r
    with np.errstate(over="ignore"):
        f1 = 1.0 / (s1 + s2 * np.exp(-l2))   # p / (s1 p + s2 g) at the proposal draws
        f2 = 1.0 / (s1 * np.exp(l1) + s2)    # g / (s1 p + s2 g) at the posterior draws
    term1 = float(np.var(f1, ddof=1) / (f1.size * np.mean(f1) ** 2))
    ess_f2 = _ess_mean(f2)
    term2 = float(np.var(f2, ddof=1) / (ess_f2 * np.mean(f2) ** 2))
    return term1, term2, ess_f2


# -- reading posterior draws -----------------------------------------------------------------

def posterior_draws(posterior) -> dict:
    """Draws as ``{site: array (chain, draw, ...)}`` from a ``numpyro.infer.MCMC`` after
    ``run``, an ArviZ / xarray ``DataTree`` with a ``posterior`` group, a netCDF file holding
    one, an ``xarray.Dataset`` with ``chain`` and ``draw`` dimensions, or such a dict."""
    if isinstance(posterior, MCMC):
        try:
            samples = posterior.get_samples(group_by_chain=True)
        except (AssertionError, TypeError, AttributeError, KeyError):  # not run yet
            samples = None
        if not samples:
            raise ValueError("posterior: this MCMC has no draws; call mcmc.run(...) first")
        return {k: np.asarray(v) for k, v in samples.items()}
    if isinstance(posterior, dict):
        return {k: np.asarray(v) for k, v in posterior.items()}
    import xarray as xr  # only here: it takes a second to import

    if isinstance(posterior, (str, os.PathLike)):
        path = Path(posterior)
        if not path.is_file():
            raise ValueError(f"posterior: no file {str(path)!r}")
        try:
            with xr.open_datatree(path) as tree:
                posterior = tree.load()
        except (OSError, ValueError) as err:
            raise ValueError(f"posterior: cannot read {str(path)!r} as netCDF: {err}") from None
    if isinstance(posterior, xr.DataTree):
        if "posterior" not in posterior.children:
            raise ValueError("posterior: the DataTree has no 'posterior' group (groups: "
                             f"{sorted(posterior.children)})")
        posterior = posterior["posterior"].to_dataset()
    if isinstance(posterior, xr.Dataset):
        out = {}
        for name, var in posterior.data_vars.items():
            if var.dims[:2] != ("chain", "draw"):
                if "chain" not in var.dims or "draw" not in var.dims:
                    raise ValueError(f"posterior: variable {name!r} lacks 'chain' and 'draw' "
                                     f"dimensions (it has {var.dims})")
                var = var.transpose("chain", "draw", ...)
            out[str(name)] = np.asarray(var.values)
        return out
    raise TypeError("posterior must be a numpyro.infer.MCMC after run, an ArviZ DataTree (or "
                    "a netCDF path) with a posterior group, or a dict of arrays (chain, draw, "
                    f"...); got {type(posterior).__name__}")


# -- the user-facing function ----------------------------------------------------------------

def _typed_key(key):
    key = check_key(key)
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    return key


def _probe_model(model, model_args, model_kwargs, key) -> dict:
    """The latent sites of the model, ``{name: ShapeDtypeStruct}``, from one abstract trace
    (``jax.eval_shape``: nothing is compiled or run, which keeps the first call fast).
    Discrete latent sites are refused by name."""
    found = {}

    def probe(k):
        with handlers.block():
            tr = handlers.trace(handlers.seed(model, k)).get_trace(*model_args, **model_kwargs)
        for name, site in tr.items():
            if site["type"] == "sample" and not site["is_observed"]:
                found[name] = (jax.ShapeDtypeStruct(jnp.shape(site["value"]),
                                                    jnp.result_type(site["value"])),
                               bool(site["fn"].support.is_discrete))
        return 0

    try:
        jax.eval_shape(probe, key)
    except Exception as err:  # noqa: BLE001 -- the user's model failed: say so, plainly
        raise ValueError(f"the model failed with the given data: {type(err).__name__}: "
                         f"{err}") from None
    discrete = [n for n, (_, is_discrete) in found.items() if is_discrete]
    if discrete:
        raise ValueError(f"bridge sampling needs continuous latent variables; the model has "
                         f"discrete latent site(s) {discrete}: marginalize them out of the model")
    if not found:
        raise ValueError("the model has no latent sample sites: nothing to integrate")
    return {n: shape for n, (shape, _) in found.items()}


def _check_draws(draws, names, shapes, dim):
    missing = [n for n in names if n not in draws]
    if missing:
        raise ValueError(f"posterior lacks the latent site(s) {missing} of the model (it has "
                         f"{sorted(draws)}); pass draws of every latent site")
    first = np.asarray(draws[names[0]])
    if first.ndim < 2:
        raise ValueError(f"posterior: site {names[0]!r} needs (chain, draw, ...) dimensions, "
                         f"got shape {first.shape}")
    c, s = first.shape[:2]
    for n in names:
        arr = np.asarray(draws[n])
        if arr.shape != (c, s) + tuple(shapes[n].shape):
            raise ValueError(f"posterior: site {n!r} has shape {arr.shape}, expected "
                             f"(chain, draw) + {tuple(shapes[n].shape)} = "
                             f"{(c, s) + tuple(shapes[n].shape)} (the model's site shape, with "
                             f"the same chains and draws as {names[0]!r})")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"posterior: site {n!r} has NaN or infinite draws")
    need = max(MIN_DRAWS, 10 * dim)
    if c * s < need or s < 4:
        raise ValueError(f"posterior: too few draws ({c} chain(s) x {s}) for bridge sampling "
                         f"in {dim} dimensions: need at least {need} in all and 4 per chain "
                         "(half of every chain fits the proposal, half enters the bridge)")
    return c, s


def _log_normal(z, mean, chol):
    """log N(z; mean, L L^T) for rows of z."""
    eta = np.linalg.solve(chol, (z - mean).T).T
    d = z.shape[-1]
    return (-0.5 * np.sum(eta**2, -1) - np.sum(np.log(np.diag(chol)))
            - 0.5 * d * np.log(2 * np.pi)), eta


def _cholesky(cov):
    cov = np.atleast_2d(cov)
    jitter = 0.0
    for _ in range(8):
        try:
            return np.linalg.cholesky(cov + jitter * np.eye(len(cov)))
        except np.linalg.LinAlgError:
            jitter = max(jitter * 10, 1e-10 * float(np.mean(np.diag(cov))) or 1e-10)
    raise ValueError("the draws' covariance is not positive definite: the chains barely moved")


def _unconstrain(model, args, kwargs, layout, params):
    """Constrained draws -> flat unconstrained vectors, by NumPyro's own transforms (supports
    that depend on other sites included)."""
    u = unconstrain_fn(model, args, kwargs, params)
    return jnp.concatenate([jnp.reshape(u[n], (-1,)) for n, *_ in layout])


def _log_joint(model, args, kwargs, layout, x):
    """``log q`` = -(NumPyro's potential energy) = log prior + log likelihood + log|J|."""
    u = {n: jnp.reshape(x[o:o + k], shape) for n, o, k, shape in layout}
    return -potential_energy(model, args, kwargs, u)


def _rebuild(spec, dynamic):
    treedef, is_array, static = spec
    it = iter(dynamic)
    return jax.tree.unflatten(treedef, [next(it) if a else v for a, v in zip(is_array, static)])


@partial(jax.jit, static_argnames=("model", "spec", "layout"))
def _to_z_compiled(params, dynamic, *, model, spec, layout):
    args, kwargs = _rebuild(spec, dynamic)
    return jax.vmap(lambda p: _unconstrain(model, args, kwargs, layout, p))(params)


@partial(jax.jit, static_argnames=("model", "spec", "layout"))
def _log_q_compiled(x, dynamic, *, model, spec, layout):
    args, kwargs = _rebuild(spec, dynamic)
    return jax.vmap(lambda xi: _log_joint(model, args, kwargs, layout, xi))(x)


def _batch_functions(model, model_args, model_kwargs, layout):
    """``(to_z, log_q)`` on batches. The data (array arguments) are traced arguments of
    module-level compiled functions, so a second call with the same model and data shapes
    (another seed, other draws, other data) reuses the compilation; the other arguments are
    static. A model that cannot take traced data (or unhashable arguments) gets functions
    compiled for this call with the data as constants."""
    leaves, treedef = jax.tree.flatten((tuple(model_args), dict(model_kwargs)))
    is_array = tuple(isinstance(v, (np.ndarray, jax.Array)) for v in leaves)
    static = tuple(None if a else v for a, v in zip(is_array, leaves))
    dynamic = [jnp.asarray(v) for a, v in zip(is_array, leaves) if a]
    spec = (treedef, is_array, static)
    try:
        hash((model, spec))
        fns = (partial(_to_z_compiled, dynamic=dynamic, model=model, spec=spec, layout=layout),
               partial(_log_q_compiled, dynamic=dynamic, model=model, spec=spec, layout=layout))
        jax.eval_shape(fns[1], jnp.zeros((1, sum(k for _, _, k, _ in layout))))
        return fns
    except Exception:  # noqa: BLE001 -- e.g. np.asarray(data) inside the model: use constants
        return (jax.jit(jax.vmap(lambda p: _unconstrain(model, model_args, model_kwargs,
                                                        layout, p))),
                jax.jit(jax.vmap(lambda x: _log_joint(model, model_args, model_kwargs,
                                                      layout, x))))


def bridge_sampling(posterior, model, *model_args, key, method: str = "normal",
                    tol: float = 1e-10, max_iterations: int = 1000,
                    **model_kwargs) -> BridgeResult:
    """log p(data) of a NumPyro model from posterior draws you already have, by bridge sampling.

    Args:
        posterior: the draws: a ``numpyro.infer.MCMC`` after ``run``, an ArviZ ``DataTree``
            (or the path of a netCDF file) with a ``posterior`` group, or a dict of arrays
            shaped (chain, draw, ...). Every latent site of ``model`` must be there; other
            variables (deterministic sites) are ignored. Draws of any NumPyro sampler work;
            correlated draws widen the error, not bias it.
        model, *model_args, **model_kwargs: the NumPyro model and the data the draws came
            from (other keyword arguments go to the model).
        key: a JAX random key for the proposal draws.
        method: "normal" (Gaussian proposal fitted to half the draws) or "warp3" (matches
            skewness too; twice the density evaluations; the choice for skewed posteriors).
        tol: stopping rule of the iteration (change of log Z).
        max_iterations: See `tol`.

    Returns a [`BridgeResult`][ebm_ppl.evidence.bridge.BridgeResult]; see the module docstring for the
    equations. Models with
    discrete latent sites are refused by name; too few draws, missing sites or draws of the
    wrong shape raise ``ValueError``; chains that did not converge (R-hat), too few effective
    draws or an iteration that did not converge are reported in ``messages`` and make
    ``reliable`` False.
    """
    t0 = time.perf_counter()
    check_choice("method", method, BRIDGE_METHODS)
    check_positive("tol", tol)
    check_positive("max_iterations", max_iterations, integer=True)
    key = _typed_key(key)
    check_model_data(model_args, model_kwargs)
    draws = posterior_draws(posterior)
    shapes = _probe_model(model, model_args, model_kwargs, key)
    names = sorted(shapes)

    u_shapes = jax.eval_shape(lambda p: unconstrain_fn(model, model_args, model_kwargs, p),
                              shapes)
    sizes = [int(np.prod(u_shapes[n].shape)) for n in names]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    dim = int(offsets[-1])
    c, s = _check_draws(draws, names, shapes, dim)

    layout = tuple((n, int(o), int(k), tuple(u_shapes[n].shape))
                   for n, o, k in zip(names, offsets, sizes))
    params = {n: np.reshape(draws[n], (c * s,) + tuple(shapes[n].shape)) for n in names}
    to_z, log_q = _batch_functions(model, model_args, model_kwargs, layout)
    z = np.asarray(to_z(params), np.float64)
    if not np.all(np.isfinite(z)):
        raise ValueError("some draws lie outside the support of their site (their "
                         "unconstrained values are not finite): are they from this model?")
    z = z.reshape(c, s, dim)
    half = s // 2
    fit, bridge = z[:, :half].reshape(-1, dim), z[:, half:]
    n1 = bridge.shape[0] * bridge.shape[1]
    n2 = n1
    mean = fit.mean(axis=0)
    chol = _cholesky(np.cov(fit, rowvar=False))
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    eps = rng.standard_normal((n2, dim))
    flat_bridge = bridge.reshape(-1, dim)
    log_det = float(np.sum(np.log(np.diag(chol))))
    std_normal = -0.5 * dim * np.log(2 * np.pi)
    if method == "normal":
        prop = mean + eps @ chol.T
        lq = np.asarray(log_q(jnp.asarray(np.concatenate([flat_bridge, prop]))), np.float64)
        lq = np.where(np.isnan(lq), -np.inf, lq)
        lg1, _ = _log_normal(flat_bridge, mean, chol)
        lg2, _ = _log_normal(prop, mean, chol)
        l1, l2 = lq[:n1] - lg1, lq[n1:] - lg2
    else:  # warp3: the symmetrized, standardized posterior against N(0, I)
        pts = np.concatenate([flat_bridge, 2 * mean - flat_bridge,
                              mean + eps @ chol.T, mean - eps @ chol.T])
        lq = np.asarray(log_q(jnp.asarray(pts)), np.float64)
        lq = np.where(np.isnan(lq), -np.inf, lq).reshape(4, n1)
        _, eta = _log_normal(flat_bridge, mean, chol)
        l1 = (log_det + np.logaddexp(lq[0], lq[1]) - np.log(2)
              - (std_normal - 0.5 * np.sum(eta**2, -1)))
        l2 = (log_det + np.logaddexp(lq[2], lq[3]) - np.log(2)
              - (std_normal - 0.5 * np.sum(eps**2, -1)))
    if not np.any(np.isfinite(l1)):
        raise ValueError("the model's density is not finite at any posterior draw: are the "
                         "draws from this model and these data?")

    ess_coords = np.atleast_1d(effective_sample_size(bridge))
    ess_draws = float(np.clip(np.nanmedian(ess_coords), 1.0, n1))
    s1 = ess_draws / (ess_draws + n2)
    log_r, iters, converged, trace = bridge_estimate(l1, l2, s1, tol=tol,
                                                     max_iterations=max_iterations)
    re_prop, re_post, ess_f2 = bridge_relative_mse(l1.reshape(bridge.shape[:2]), l2, log_r, s1)
    rhat = np.atleast_1d(split_gelman_rubin(z))
    labels = [n if k == 1 else f"{n}[{i}]" for n, k in zip(names, sizes) for i in range(k)]
    messages, reliable = _diagnose(labels, rhat, ess_f2, converged, iters, l2, bridge, method)
    return BridgeResult(
        log_z=float(log_r), log_z_se=float(np.sqrt(re_prop + re_post)),
        method=f"bridge ({method})",
        samples={n: np.asarray(draws[n])[:, half:] for n in names},
        log_ratio_posterior=l1.reshape(bridge.shape[:2]), log_ratio_proposal=l2,
        num_draws=int(n1), num_fit_draws=int(fit.shape[0]), num_proposal=int(n2),
        ess=float(ess_f2), ess_draws=ess_draws, rhat=float(np.nanmax(rhat)),
        relative_mse_proposal=re_prop, relative_mse_posterior=re_post,
        num_iterations=int(iters), converged=bool(converged), log_z_trace=trace,
        data_fingerprint=observed_fingerprint(model, *model_args, **model_kwargs),
        wall_time=time.perf_counter() - t0, messages=tuple(messages), reliable=reliable)


def _diagnose(labels, rhat, ess_f2, converged, iters, l2, bridge, method):
    messages, reliable = [], True
    worst = float(np.nanmax(rhat)) if np.any(np.isfinite(rhat)) else float("nan")
    if not np.isfinite(worst) or worst > RHAT_NOTE:
        where = labels[int(np.nanargmax(rhat))] if np.isfinite(worst) else "?"
        messages.append(
            f"split R-hat {worst:.3f} > {RHAT_NOTE} (at {where}, unconstrained): the chains may "
            "not have converged; the draws may not represent the posterior and log Z may be off "
            "by more than log_z_se; run longer")
        reliable = reliable and np.isfinite(worst) and worst <= RHAT_FAIL
    if ess_f2 < MIN_ESS:
        messages.append(f"only {ess_f2:.0f} effective draws of the bridge function (< {MIN_ESS}):"
                        " the error estimate is rough; use more draws or a better-mixing sampler")
        reliable = False
    if not converged:
        messages.append(f"the bridge iteration did not converge in {iters} iterations")
        reliable = False
    dead = int(np.sum(~np.isfinite(l2)))
    if dead:
        messages.append(f"{dead} proposal draw(s) fell where the model's density is zero or "
                        "not finite (they count as zero)")
    flat = bridge.reshape(-1, bridge.shape[-1])
    sd = flat.std(axis=0)
    skew = np.mean(((flat - flat.mean(0)) / np.where(sd > 0, sd, 1.0)) ** 3, axis=0)
    if method == "normal" and np.max(np.abs(skew)) > SKEW_NOTE:
        messages.append(f"the unconstrained posterior is skewed (|skewness| up to "
                        f"{np.max(np.abs(skew)):.2f}): method='warp3' usually has a smaller error")
    return messages, bool(reliable)
