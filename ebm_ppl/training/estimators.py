"""Gradient estimators of the training objective, configured the optax way.

Each factory takes its own options, checks them at once, and returns an
[`Estimator`][ebm_ppl.training.estimators.Estimator]
(options bound, like ``optax.adam(1e-3)`` binds its rate); [`ebm_ppl.train`][ebm_ppl.train] then takes the
estimator and the optimizer::

    fit = ep.train(energy_fn, params, data, key=key,
                   estimator=ep.training.jarzynski(num_walkers=512, step_size=0.05),
                   optimizer=optax.adam(1e-2))

* [`jarzynski`][ebm_ppl.training.estimators.jarzynski] -- Jarzynski-reweighted ULA walkers, eq. 102-106
(tracks log Z_theta);
* [`cd`][ebm_ppl.training.estimators.cd], [`pcd`][ebm_ppl.training.estimators.pcd] -- contrastive divergence,
Algorithms 1 and 2 (seed 6.1);
* [`score_matching`][ebm_ppl.training.estimators.score_matching],
[`denoising_score_matching`][ebm_ppl.training.estimators.denoising_score_matching],
[`sliced_score_matching`][ebm_ppl.training.estimators.sliced_score_matching],
  [`nce`][ebm_ppl.training.estimators.nce] -- the sampling-free objectives of seed 6.2.

``train(..., method="pcd", num_walkers=...)`` (the options spelled as ``train`` keywords) still
works, with a DeprecationWarning: `from_train_keywords`
maps it onto these factories.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import check_choice, check_finite_array, check_positive
from ..evidence import log_partition
from ..sharding import shard_walkers
from ..weights import threshold_from_variance
from . import sampling as _s
from . import sampling_free as _sf

__all__ = ["Estimator", "jarzynski", "cd", "pcd", "score_matching", "denoising_score_matching",
           "sliced_score_matching", "nce", "METHODS", "SAMPLING"]

METHODS = ("jarzynski", "pcd", "cd", "sm", "dsm", "ssm", "nce")
SAMPLING = ("jarzynski", "pcd", "cd")
DEFAULT_RESAMPLE_THRESHOLD = threshold_from_variance(0.4)  # = 1/1.4, the old default


@dataclass(frozen=True)
class Estimator:
    """A gradient estimator with its options bound (what the factories return).

    ``method`` names it (``result.method``); ``options`` are its static options (hashable:
    they key the compiled programs and the checkpoint fingerprint); ``init_walkers`` and
    ``log_z0`` are the starting data of [`jarzynski`][ebm_ppl.training.estimators.jarzynski] /
    [`nce`][ebm_ppl.training.estimators.nce] (not static)."""

    method: str
    options: tuple = ()
    init_walkers: Any = field(default=None, compare=False, repr=False)
    log_z0: float | None = field(default=None, compare=False)

    def option(self, name: str, default=None):
        return dict(self.options).get(name, default)

    @property
    def uses_walkers(self) -> bool:
        return self.method in SAMPLING

    def bind(self, energy_fn, data, *, init_walkers=None, log_z0=None) -> _s.EstimatorFns:
        """The ``(init, estimate, advance)`` functions on ``energy_fn`` and ``data``."""
        o, m = dict(self.options), self.method
        if m == "jarzynski":
            return _s.jarzynski(energy_fn, data, init_walkers=init_walkers, log_z0=log_z0,
                                step_size=o["step_size"], num_steps=o["num_steps"],
                                resample_threshold=o["resample_threshold"])
        if m in ("cd", "pcd"):
            return _s.contrastive_divergence(
                energy_fn, data, num_walkers=o["num_walkers"], step_size=o["step_size"],
                num_steps=o["num_steps"], persistent=m == "pcd", reinit_every=o["reinit_every"])
        if m == "sm":
            return _sf.score_matching(energy_fn, data, trace=o["sm_trace"])
        if m == "dsm":
            return _sf.denoising_score_matching(energy_fn, data, noise_scale=o["noise_scale"])
        if m == "ssm":
            return _sf.sliced_score_matching(energy_fn, data, num_projections=o["num_projections"])
        noise = _sf.default_noise(data) if o["noise"] is None else o["noise"]
        return _sf.noise_contrastive(energy_fn, data, noise=noise, noise_ratio=o["noise_ratio"],
                                     log_z0=log_z0, log_z_optimizer=o["log_z_optimizer"])


def _int(name, value):
    return check_positive(name, value, integer=True)


def _log_z0(log_z0):
    if log_z0 is None:
        return None
    arr = np.asarray(log_z0)
    if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr):
        raise ValueError(f"log_z0 must be a finite number, got {log_z0!r}")
    return float(arr)


def _walker_options(num_walkers, step_size, num_steps) -> tuple:
    return (("num_walkers", _int("num_walkers", num_walkers)),
            ("step_size", check_positive("step_size", step_size)),
            ("num_steps", _int("num_steps", num_steps)))


def jarzynski(*, num_walkers: int = 1024, step_size: float = 1e-2, num_steps: int = 1,
              resample_threshold: float = DEFAULT_RESAMPLE_THRESHOLD, log_z0: float | None = None,
              init_walkers=None, num_equilibration_steps: int = 500) -> Estimator:
    """Jarzynski-reweighted ULA (seed eq. 102-106): ``num_walkers`` walkers, ``num_steps`` ULA
    steps of ``step_size`` per update, weighted gradient average (eq. 105), log Z_theta_k
    tracked (eq. 104).

    Args:
        resample_threshold: resample when the walkers' ESS fraction falls below it (the
            meaning it has everywhere in the library,
            [`ebm_ppl.weights.should_resample`][ebm_ppl.weights.should_resample]).
            The default 1/1.4 is the old "relative weight variance above 0.4".
        log_z0: log Z of the initial model; None estimates it with ``ep.log_partition``.
        init_walkers: ``(num_walkers, d)`` draws from the initial model; None equilibrates
            data points by ``num_equilibration_steps`` MALA steps.
    """
    if not (np.isfinite(resample_threshold) and 0.0 <= resample_threshold <= 1.0):
        raise ValueError(f"resample_threshold is an ESS fraction in [0, 1], got "
                         f"{resample_threshold!r}")
    opts = _walker_options(num_walkers, step_size, num_steps)
    if init_walkers is not None:
        init_walkers = check_finite_array("init_walkers", init_walkers, ndim=2)
        if init_walkers.shape[0] != dict(opts)["num_walkers"]:
            raise ValueError(f"init_walkers must have shape (num_walkers, d) with num_walkers="
                             f"{num_walkers}, got {init_walkers.shape}")
    return Estimator("jarzynski", opts + (
        ("resample_threshold", float(resample_threshold)),
        ("num_equilibration_steps", _int("num_equilibration_steps", num_equilibration_steps))),
        init_walkers=init_walkers, log_z0=_log_z0(log_z0))


def cd(*, num_walkers: int = 1024, step_size: float = 1e-2, num_steps: int = 1,
       reinit_every: int = 1) -> Estimator:
    """Contrastive divergence (Algorithm 1): walkers re-drawn from the data every
    ``reinit_every`` iterations, then ``num_steps`` ULA steps; uniform weights."""
    return Estimator("cd", _walker_options(num_walkers, step_size, num_steps)
                     + (("reinit_every", _int("reinit_every", reinit_every)),))


def pcd(*, num_walkers: int = 1024, step_size: float = 1e-2, num_steps: int = 1) -> Estimator:
    """Persistent contrastive divergence (Algorithm 2): persistent ULA walkers started at the
    data; uniform weights."""
    return Estimator("pcd", _walker_options(num_walkers, step_size, num_steps)
                     + (("reinit_every", 1),))


def score_matching(*, trace: str = "auto") -> Estimator:
    """Score matching (Hyvarinen 2005, seed 6.2); ``trace``: ``"auto"|"exact"|"hutchinson"``
    for the Hessian trace."""
    return Estimator("sm", (("sm_trace", check_choice("sm_trace", trace,
                                                      ("auto", "exact", "hutchinson"))),))


def denoising_score_matching(*, noise_scale: float = 0.1) -> Estimator:
    """Denoising score matching (Vincent 2011) with Gaussian corruption ``noise_scale``."""
    return Estimator("dsm", (("noise_scale", check_positive("noise_scale", noise_scale)),))


def sliced_score_matching(*, num_projections: int = 1) -> Estimator:
    """Sliced score matching (Song et al. 2019) with ``num_projections`` random directions."""
    return Estimator("ssm", (("num_projections", _int("num_projections", num_projections)),))


def nce(*, noise=None, noise_ratio: int = 1, log_z0: float | None = None,
        log_z_optimizer=None) -> Estimator:
    """Noise-contrastive estimation (Gutmann & Hyvarinen 2010) with a learned log Z.

    Args:
        noise: a NumPyro distribution with event shape ``(d,)`` (default: a Gaussian with the
            data's mean and twice its covariance); ``noise_ratio`` draws per data point.
        log_z0: the learned constant's start (default: where the data's mean log-odds is 0).
        log_z_optimizer: optax transformation of the learned log Z (default: ``train``'s
            optimizer itself when it applies to a scalar, e.g. adam or sgd).
    """
    if noise is not None and not all(callable(getattr(noise, a, None))
                                     for a in ("sample", "log_prob")):
        raise ValueError("noise must be a NumPyro distribution (with sample and log_prob)")
    if log_z_optimizer is not None and not all(callable(getattr(log_z_optimizer, a, None))
                                               for a in ("init", "update")):
        raise ValueError("log_z_optimizer must be an optax GradientTransformation")
    return Estimator("nce", (("noise", noise), ("noise_ratio", _int("noise_ratio", noise_ratio)),
                             ("log_z_optimizer", log_z_optimizer)), log_z0=_log_z0(log_z0))


FACTORIES: dict[str, Callable[..., Estimator]] = {
    "jarzynski": jarzynski, "cd": cd, "pcd": pcd, "sm": score_matching,
    "dsm": denoising_score_matching, "ssm": sliced_score_matching, "nce": nce}

# the old ``train`` keywords: name -> (default, {method: factory keyword})
_WALKERS: dict[str, str | None] = {"jarzynski": None, "cd": None, "pcd": None}
_OLD: dict[str, tuple[Any, dict[str, str | None]]] = {
    "num_walkers": (1024, _WALKERS), "step_size": (1e-2, _WALKERS),
    "num_steps": (1, _WALKERS), "init_walkers": (None, {"jarzynski": None}),
    "log_z0": (None, {"jarzynski": None, "nce": None}),
    "num_equilibration_steps": (500, {"jarzynski": None}),
    "resample_threshold": (0.4, {"jarzynski": None}), "reinit_every": (1, {"cd": None}),
    "noise": (None, {"nce": None}), "noise_ratio": (1, {"nce": None}),
    "log_z_optimizer": (None, {"nce": None}), "noise_scale": (0.1, {"dsm": None}),
    "sm_trace": ("auto", {"sm": "trace"}), "num_projections": (1, {"ssm": None}),
}
OLD_KEYWORDS = frozenset(_OLD) | {"method"}


def from_train_keywords(kw: dict, stacklevel: int = 3) -> Estimator:
    """The estimator the old ``train(..., method=..., <options>)`` spelling described, with a
    DeprecationWarning; options another method would use are ignored, as they were."""
    method = kw.pop("method", "jarzynski")
    check_choice("method", method, METHODS)
    if kw.get("init_walkers") is not None and method != "jarzynski":
        raise ValueError(f"init_walkers is only used by method='jarzynski', not {method!r}")
    if method == "pcd" and "reinit_every" in kw:
        _int("reinit_every", kw["reinit_every"])  # checked as before, unused by PCD
    args = {}
    for name, value in kw.items():
        target = _OLD[name][1]
        if method in target:
            args[target[method] or name] = value
    if method == "jarzynski" and "resample_threshold" in args:  # old meaning: variance above
        t = check_positive("resample_threshold", args["resample_threshold"])
        args["resample_threshold"] = threshold_from_variance(t)
    hint = ", ".join(f"{k}={v:.6g}" if isinstance(v, float | np.floating) else f"{k}={v!r}"
                     for k, v in args.items() if k not in ("init_walkers", "noise"))
    name = {"sm": "score_matching", "dsm": "denoising_score_matching",
            "ssm": "sliced_score_matching"}.get(method, method)
    note = " (its resample_threshold is an ESS fraction)" if method == "jarzynski" else ""
    warnings.warn(f"train(method=..., <estimator options>) is deprecated: pass "
                  f"estimator=ep.training.{name}({hint}){note}", DeprecationWarning,
                  stacklevel=stacklevel)
    return FACTORIES[method](**args)


def resolve(estimator) -> Estimator:
    """An [`Estimator`][ebm_ppl.training.estimators.Estimator], or a method name for its defaults
    (``"pcd"``)."""
    if isinstance(estimator, str):
        check_choice("estimator", estimator, METHODS)
        return FACTORIES[estimator]()
    if not isinstance(estimator, Estimator):
        raise ValueError("estimator must be an ep.training estimator (e.g. "
                         f"ep.training.jarzynski()) or one of {METHODS}, got "
                         f"{type(estimator).__name__}")
    return estimator


# -- what a run needs before its first iteration -------------------------------------------------

def check_for_data(est: Estimator, data) -> None:
    """Checks that need the data: init_walkers' dimension, the NCE noise's event shape."""
    d = data.shape[1]
    if est.init_walkers is not None and est.init_walkers.shape[1] != d:
        raise ValueError(f"init_walkers must have shape (num_walkers, d) = "
                         f"{(est.option('num_walkers'), d)}, got {est.init_walkers.shape}")
    noise = est.option("noise")
    if noise is not None:
        try:
            out = jax.eval_shape(noise.log_prob, jnp.asarray(data[:3]))
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"noise.log_prob failed on data rows of dimension {d}: {err}") from None
        if out.shape != (3,):
            raise ValueError(f"noise must have event shape ({d},) (one log density per data "
                             f"row); its log_prob of 3 rows has shape {out.shape}")


def prepare_nce(est: Estimator, energy_fn, params, data, optimizer, info):
    """For NCE: the estimator with its log Z optimizer resolved, and the start of c (else
    ``(est, None)``)."""
    if est.method != "nce":
        return est, None
    tx = nce_log_z_optimizer(est, optimizer, data.dtype)
    est = dataclasses.replace(est, options=tuple(
        (k, tx if k == "log_z_optimizer" else v) for k, v in est.options))
    c0 = est.log_z0 if est.log_z0 is not None else nce_log_z_start(
        energy_fn, params, data, est.option("noise"))
    info["log_z0"] = float(c0)
    return est, c0


def nce_log_z_optimizer(est: Estimator, optimizer, dtype):
    """NCE's optimizer of c: the given one, or the user's optimizer if it takes a scalar."""
    tx = est.option("log_z_optimizer") or optimizer
    c = jax.ShapeDtypeStruct((), dtype)
    try:
        jax.eval_shape(lambda c: tx.update(c, tx.init(c), c), c)
    except Exception as err:  # noqa: BLE001 -- e.g. multi_transform labels for the params
        raise ValueError(
            "method='nce' learns log Z as a scalar: the optimizer does not apply to a scalar "
            f"({type(err).__name__}); pass log_z_optimizer= (e.g. optax.adam(1e-2))") from None
    return tx


def nce_log_z_start(energy_fn, params, data, noise):
    """Start c where the mean log-odds of the data is zero (no saturated classifier)."""

    def fn(p, x):
        q = _sf.default_noise(x) if noise is None else noise
        return jnp.mean(-jax.vmap(energy_fn, (None, 0))(p, x) - q.log_prob(x))

    return float(jax.jit(fn)(params, data))


def jarzynski_start(est: Estimator, energy_fn, params, data, key, info, sharding=None):
    """Walkers and log Z_0 of the initial model (given, or equilibrated / estimated)."""
    walkers = None if est.init_walkers is None else jnp.asarray(est.init_walkers, data.dtype)
    walkers = shard_walkers(walkers, sharding)
    if walkers is None:
        n, h, steps = (est.option(k) for k in ("num_walkers", "step_size",
                                               "num_equilibration_steps"))
        start = shard_walkers(_s.draw_rows(jax.random.fold_in(key, 0x7FFFFFFE), data, n),
                              sharding)
        walkers = jax.jit(_s.equilibrate, static_argnums=(1, 5))(
            jax.random.fold_in(key, 0x7FFFFFFD), energy_fn, params, start, h, steps)
        info["init_walkers"] = f"data equilibrated by {steps} MALA steps"
    else:
        info["init_walkers"] = "given"
    log_z0 = est.log_z0
    if log_z0 is None:
        res = log_partition(lambda x: energy_fn(params, x), dim=data.shape[1],
                            key=jax.random.fold_in(key, 0x7FFFFFFC), progress_bar=False)
        log_z0 = float(res.log_z)
        info.update(log_z0_source="estimated with ep.log_partition", log_z0_se=float(res.log_z_se))
    else:
        info["log_z0_source"] = "given"
    info["log_z0"] = float(log_z0)
    return walkers, jnp.asarray(log_z0, data.dtype)
