"""Sampling-free gradient estimators (seed section 6.2): SM, DSM, SSM and NCE.

Each is a loss on a data batch, differentiated by JAX; the state is empty, so ``advance`` is
the identity. With U = -log rho_theta (up to log Z) the model score is -grad U.

* ``sm``: J = E_*[|grad U|^2 / 2 - Laplacian U] (Hyvarinen 2005; seed eq. 49 / 6.2). The
  Laplacian is exact (trace of the Hessian) for small d and Hutchinson's estimator
  E_v[v^T H v] with Rademacher v for large d.
* ``dsm``: J = E_* E_{x~ = x + sigma eps} |grad U(x~) - eps / sigma|^2 / 2 (Vincent 2011). The
  seed prints ``+ (x~ - x)/sigma^2``; with U = -log rho the model score is -grad U, so the
  residual is ``grad U(x~) - (x~ - x)/sigma^2``. It fits the score of the data convolved with
  N(0, sigma^2 I), not of the data itself.
* ``ssm``: J = E_* E_v[(v . grad U)^2 / 2 - v^T H v], v ~ N(0, I) (Song et al. 2020).
* ``nce``: logistic loss between data and noise (Gutmann & Hyvarinen 2010), with log Z learned
  as a parameter ``c`` (in the estimator's state, with its own optax transformation):
  log rho_theta = -U - c, so ``c`` estimates log Z_theta. As in their
  paper the noise sample (``noise_ratio`` draws per data point) is drawn once; its log density
  and that of the data are computed once and kept in the estimator's state.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax

from .sampling import EstimatorFns, rows


def _empty_init(key, params):
    return ()


def _identity_advance(key, params_next, state, k):
    return state, {}


def _loss_estimator(loss_fn, init=_empty_init) -> EstimatorFns:
    """Wrap ``loss_fn(key, params, state, idx) -> (loss, metrics)`` as an estimator."""

    def estimate(key, params, state, idx):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(
            key, params, state, idx)
        return grads, state, {"loss": loss, **metrics}

    return EstimatorFns(init, estimate, _identity_advance)


def _mean_over_points(per_point, data):
    """Loss = mean over the batch of ``per_point(key, params, x)`` (one key per point)."""

    def loss_fn(key, params, state, idx):
        batch = rows(data, idx)
        keys = jax.random.split(key, batch.shape[0])
        return jnp.mean(jax.vmap(per_point, in_axes=(0, None, 0))(keys, params, batch)), {}

    return loss_fn


def _hvp(energy_fn, params, x, v):
    """(grad U(x), v^T H(x) v) with one forward-over-reverse pass."""
    grad_fn = jax.grad(lambda y: energy_fn(params, y))
    g, hv = jax.jvp(grad_fn, (x,), (v,))
    return g, jnp.dot(v, hv)


def score_matching(energy_fn, data, *, trace: str = "auto", exact_max_dim: int = 32) -> EstimatorFns:
    """Score matching; ``trace="exact"|"hutchinson"|"auto"`` (exact when d <= 32)."""
    exact = trace == "exact" or (trace == "auto" and data.shape[1] <= exact_max_dim)

    def per_point(key, params, x):
        if exact:
            grad_fn = jax.grad(lambda y: energy_fn(params, y))
            g = grad_fn(x)
            lap = jnp.trace(jax.jacfwd(grad_fn)(x))
        else:
            v = jax.random.rademacher(key, x.shape, x.dtype)
            g, lap = _hvp(energy_fn, params, x, v)
        return 0.5 * jnp.sum(g * g) - lap

    return _loss_estimator(_mean_over_points(per_point, data))


def denoising_score_matching(energy_fn, data, *, noise_scale: float) -> EstimatorFns:
    """DSM with Gaussian corruption of scale ``noise_scale`` (sigma)."""

    def per_point(key, params, x):
        eps = jax.random.normal(key, x.shape, x.dtype)
        g = jax.grad(energy_fn, argnums=1)(params, x + noise_scale * eps)
        return 0.5 * jnp.sum((g - eps / noise_scale) ** 2)

    return _loss_estimator(_mean_over_points(per_point, data))


def sliced_score_matching(energy_fn, data, *, num_projections: int = 1) -> EstimatorFns:
    """SSM with ``num_projections`` Gaussian directions per data point."""

    def per_point(key, params, x):
        vs = jax.random.normal(key, (num_projections, *x.shape), x.dtype)
        g, vhv = jax.vmap(lambda v: _hvp(energy_fn, params, x, v))(vs)
        return jnp.mean(0.5 * jnp.sum(vs * g, axis=-1) ** 2 - vhv)

    return _loss_estimator(_mean_over_points(per_point, data))


def default_noise(data):
    """NCE's default noise: a Gaussian with the data's mean and twice its covariance (wider
    than the data, so the classifier has signal wherever the data lives)."""
    d = data.shape[1]
    centered = data - data.mean(0)
    cov = 2.0 * centered.T @ centered / (data.shape[0] - 1) + 1e-9 * jnp.eye(d, dtype=data.dtype)
    return dist.MultivariateNormal(data.mean(0), covariance_matrix=cov)


def noise_contrastive(energy_fn, data, *, noise, noise_ratio: int = 1, log_z0,
                      log_z_optimizer) -> EstimatorFns:
    """NCE with ``noise`` a NumPyro distribution with event shape ``(d,)`` and ``noise_ratio``
    (nu) noise draws per data point. The learned log Z (``c``) lives in the estimator's state
    with its own optax ``log_z_optimizer``, so the user's optimizer sees the user's params."""
    log_nu = math.log(noise_ratio)
    n = data.shape[0]

    def init(key, params):
        fake = noise.sample(key, (noise_ratio * n,)).astype(data.dtype)
        c = jnp.asarray(log_z0, data.dtype)
        return {"noise": fake, "noise_log_prob": noise.log_prob(fake).astype(data.dtype),
                "data_log_prob": noise.log_prob(data).astype(data.dtype), "log_z": c,
                "log_z_opt": log_z_optimizer.init(c)}

    def logit(params, c, x, log_noise):
        # log-odds that x is data: log rho_theta(x) - log(nu rho_noise(x)), log rho = -U - c
        log_model = -jax.vmap(energy_fn, in_axes=(None, 0))(params, x) - c
        return log_model - log_noise - log_nu

    def loss_fn(params, c, key, state, idx):
        if idx is None:
            x, lx, y, ly = data, state["data_log_prob"], state["noise"], state["noise_log_prob"]
        else:
            j = jax.random.randint(key, (noise_ratio * idx.shape[0],), 0, noise_ratio * n)
            x, lx = data[idx], state["data_log_prob"][idx]
            y, ly = state["noise"][j], state["noise_log_prob"][j]
        return -(jnp.mean(jax.nn.log_sigmoid(logit(params, c, x, lx)))
                 + noise_ratio * jnp.mean(jax.nn.log_sigmoid(-logit(params, c, y, ly))))

    def estimate(key, params, state, idx):
        c = state["log_z"]
        loss, (grads, grad_c) = jax.value_and_grad(loss_fn, argnums=(0, 1))(
            params, c, key, state, idx)
        updates, opt = log_z_optimizer.update(grad_c, state["log_z_opt"], c)
        state = {**state, "log_z": optax.apply_updates(c, updates), "log_z_opt": opt}
        return grads, state, {"loss": loss, "log_z": c}

    return EstimatorFns(init, estimate, _identity_advance)
