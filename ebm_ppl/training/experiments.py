"""The mode-weight experiment of Carbone et al. (the seed's reference for eq. 102-106).

Data from rho* proportional to exp(-|x - a1|^2/2) + 3 exp(-|x - a2|^2/2), a1 = -10 e1, a2 = 6 e1
(mode weights 0.25 / 0.75); the student is the two-component
[`gaussian_mixture_energy`][ebm_ppl.training.families.gaussian_mixture_energy]
with the first log-weight frozen. Jarzynski-reweighted training recovers the weights and
tracks log Z; PCD collapses onto the heavy mode and CD stays near equal weights, because
both follow the Fisher divergence (eq. 99-100), which is blind to the mass between far modes.
Used by the tests, ``examples/jarzynski_vs_cd_pcd.py`` and ``benchmarks/training_throughput.py``.
"""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .estimators import DEFAULT_RESAMPLE_THRESHOLD, FACTORIES
from .families import gaussian_mixture_energy, mixture_weights
from .loop import train

TRUE_P1 = 0.25


def problem(dim: int = 50, num_data: int = 10_000, seed: int = 0):
    """Data, the teacher, the student family and its initial parameters (float64 if enabled)."""
    rng = np.random.default_rng(seed)
    e1 = np.eye(dim)[0]
    teacher = gaussian_mixture_energy(np.stack([-10.0 * e1, 6.0 * e1]), np.log([1.0, 3.0]))
    mode = rng.random(num_data) < TRUE_P1
    data = np.where(mode[:, None], -10.0 * e1, 6.0 * e1) + rng.normal(size=(num_data, dim))
    means0 = 0.01 * rng.normal(size=(2, dim))
    means0[0, 0], means0[1, 0] = -0.1, 0.1
    student = gaussian_mixture_energy(means0, np.zeros(2))
    return data, teacher, student


def optimizer(lr_means: float = 0.0025, lr_log_weights: float = 0.0125):
    """Plain gradient descent, per-parameter rates, the first log-weight frozen (optax only)."""

    def freeze_first(updates, params):
        return {**updates, "log_weights": updates["log_weights"].at[0].set(0.0)}

    rates = {"means": optax.sgd(lr_means), "log_weights": optax.sgd(lr_log_weights)}
    sgd = optax.multi_transform(rates, {"means": "means", "log_weights": "log_weights"})
    return optax.chain(optax.stateless(freeze_first), sgd)


def initial_walkers(student, num_walkers: int, seed: int = 1):
    """Exact draws from the initial student: half the walkers at each initial mean."""
    rng = np.random.default_rng(seed)
    means = np.asarray(student.params["means"])
    which = np.arange(num_walkers) >= num_walkers // 2
    return means[which.astype(int)] + rng.normal(size=(num_walkers, student.dim))


def kl_to_student(teacher, student, params, *, num_samples: int = 200_000, seed: int = 2):
    """KL(rho* || rho_theta) with exact draws from rho* and exact log Z of both: (kl, se)."""
    rng = np.random.default_rng(seed)
    tp = teacher.params
    w = np.asarray(mixture_weights(tp))
    comp = rng.random(num_samples) < w[0]
    centers = np.where(comp[:, None], np.asarray(tp["means"][0]), np.asarray(tp["means"][1]))
    x = jnp.asarray(centers + rng.normal(size=(num_samples, teacher.dim)))

    @jax.jit
    def log_ratio(x):
        u_t = jax.vmap(teacher.energy_fn, (None, 0))(tp, x)
        u_s = jax.vmap(student.energy_fn, (None, 0))(params, x)
        return -u_t - teacher.log_z_fn(tp) + u_s + student.log_z_fn(params)

    r = np.asarray(log_ratio(x))
    return float(r.mean()), float(r.std(ddof=1) / math.sqrt(num_samples))


def run(method: str, *, dim: int = 50, num_data: int = 10_000, num_walkers: int = 10_000,
        num_iterations: int = 8000, step_size: float = 0.1, lr_means: float = 0.0025,
        lr_log_weights: float = 0.0125, cd_factor: float = 10.0, cd_reinit_every: int = 4,
        resample_threshold: float = DEFAULT_RESAMPLE_THRESHOLD, seed: int = 0, progress_bar: bool = False,
        kl_samples: int = 200_000, **kwargs) -> dict:
    """Train the student with ``method`` ("jarzynski", "pcd" or "cd"); return a summary.

    The summary has the fit (its history also holds the exact ``p1``, ``a1`` and
    ``log_z_exact`` of every iterate theta_k), the final ``p1`` = softmax(log_weights)_1, ``a1``
    (first coordinate of mean 1), exact KL(rho* || rho_theta) with its Monte Carlo standard
    error, and the exact final log Z.
    """
    data, teacher, student = problem(dim, num_data, seed)
    factory = FACTORIES[method]
    names = inspect.signature(factory).parameters  # the estimator's options; the rest: train's
    est_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
    est_kw.update(num_walkers=num_walkers, step_size=step_size)
    if method == "cd":
        opt = optimizer(cd_factor * lr_means, cd_factor * lr_log_weights)
        est_kw.setdefault("reinit_every", cd_reinit_every)
    else:
        opt = optimizer(lr_means, lr_log_weights)
    if method == "jarzynski":
        est_kw.setdefault("init_walkers", initial_walkers(student, num_walkers, seed + 1))
        est_kw.setdefault("log_z0", float(student.log_z_fn(student.params)))
        est_kw.setdefault("resample_threshold", resample_threshold)
    track = lambda p: {"p1": mixture_weights(p)[0], "a1": p["means"][0, 0],  # noqa: E731
                       "log_z_exact": student.log_z_fn(p)}
    fit = train(student.energy_fn, student.params, data, key=jax.random.key(seed),
                estimator=factory(**est_kw), optimizer=opt, num_iterations=num_iterations,
                progress_bar=progress_bar, track=track, **kwargs)
    kl, kl_se = kl_to_student(teacher, student, fit.params, num_samples=kl_samples, seed=seed + 2)
    return {"fit": fit, "p1": float(mixture_weights(fit.params)[0]),
            "a1": float(fit.params["means"][0, 0]), "kl": kl, "kl_se": kl_se,
            "log_z_exact": float(student.log_z_fn(fit.params))}

