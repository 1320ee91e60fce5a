"""The result of [`ebm_ppl.train`][ebm_ppl.train]: final parameters, per-iteration history, walkers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..diagnostics.summary import WEIGHTED_GROUP, weighted_datatree
from ..persist import load_result, register, save_result
from ..sharding import to_host
from ..weights import log_mean_exp

SAMPLING = ("jarzynski", "pcd", "cd")


@register
@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        params: final parameters theta_K (the user's pytree).
        history: per-iteration arrays (index k = the iterate theta_k the value was computed
            at). Always ``"iteration"``; by method: ``"loss"`` (the objective; for
            ``jarzynski`` the cross-entropy estimate eq. 106), ``"log_z"`` (absolute log
            Z_theta_k: ``jarzynski`` via eq. 104, ``nce`` the learned constant), ``"ess"``
            and ``"resampled"`` (``jarzynski``), ``"energy_gap"`` (``cd``/``pcd``: mean data
            energy minus mean walker energy), ``"data_energy"``, ``"divergent"``;
            ``"num_dead"`` (walkers whose energy or gradient became non-finite, or whose ULA
            move diverged, at that iteration: weight zero, removed at the next resampling,
            copied over by live walkers for ``cd``/``pcd``) and ``"num_alive"``.
        walkers: final walker positions ``(num_walkers, d)`` (sampling-based methods) or None.
        log_weights: final log weights of the walkers (``jarzynski``) or None.
        log_z: final absolute log Z_theta estimate where the method gives one, else None.
        method: the estimator used.
        opt_state: final optax state.
        info: how the run was set up (``log_z0`` and its source, how walkers started,
            iteration resumed from, chunk size, wall time).
        walker_state: the final walker state (sampling methods) as JAX arrays left on the
            device(s), sharded over the ``"walkers"`` mesh axis when ``devices=``/``mesh=``
            was given; None otherwise.
    """

    params: Any
    history: dict
    walkers: np.ndarray | None
    log_weights: np.ndarray | None
    log_z: float | None
    method: str
    opt_state: Any = None
    info: dict = field(default_factory=dict)
    walker_state: Any = None

    @property
    def num_iterations(self) -> int:
        return int(np.size(self.history["iteration"]))

    @property
    def num_dead(self) -> int:
        """Walkers that died over the run (0 for methods without walkers)."""
        return int(np.sum(self.history.get("num_dead", 0)))

    def save(self, path):
        """Write this result to a netCDF file (a ``DataTree`` with the ``training`` group of
        `to_arviz` plus every field -- params, optimizer state, walkers, weights,
        history, info -- stored exactly). Returns the path."""
        return save_result(self, path, arviz_tree=self.to_arviz())

    @classmethod
    def from_carry(cls, method: str, carry, history: dict, info: dict) -> "TrainResult":
        """The result of a run from its final training carry (params, opt_state, state)."""
        state, walkers, log_w, log_z = carry.state, None, None, None
        if method == "nce":
            log_z = float(state["log_z"])
        if method in SAMPLING:
            walkers = to_host(state.walkers.position)
            if method == "jarzynski":
                log_w = to_host(state.walkers.log_weight)
                log_z = float(state.log_z0 + log_mean_exp(state.walkers.log_weight))
        return cls(params=carry.params, history=history, walkers=walkers, log_weights=log_w,
                   log_z=log_z, method=method, opt_state=carry.opt_state, info=info,
                   walker_state=state.walkers if method in SAMPLING else None)

    @classmethod
    def load(cls, path) -> "TrainResult":
        """Read a result written by `save`; arrays are bit-identical and pytrees (optax
        states included) keep their structure."""
        return load_result(path, cls)

    def to_arviz(self):
        """The history as an ``xarray.DataTree`` (group ``training``, dimension ``iteration``).

        With weighted walkers (``jarzynski``), their groups follow the library's rule for
        weighted results ([`ebm_ppl.diagnostics.weighted_datatree`][ebm_ppl.diagnostics.weighted_datatree]):
        ``posterior`` is an
        equal-weight resample of the walkers (size round(Kish ESS)) and ``weighted_posterior``
        holds every walker with its ``log_weight`` and ``weight``."""
        import xarray as xr

        data = {k: ("iteration", np.asarray(v)) for k, v in self.history.items()
                if k != "iteration"}
        ds = xr.Dataset(data, coords={"iteration": np.asarray(self.history["iteration"])},
                        attrs={"method": self.method,
                               **{k: v for k, v in self.info.items()
                                  if isinstance(v, (int, float, str, bool))}})
        groups = {"training": ds}
        lw = None if self.log_weights is None else np.asarray(self.log_weights, float)
        if (self.walkers is not None and lw is not None and lw.ndim == 1
                and np.any(np.isfinite(lw)) and not np.any(np.isnan(lw) | (lw == np.inf))):
            walkers = np.asarray(self.walkers)
            weighted = weighted_datatree(walkers.reshape(walkers.shape[0], -1), lw)
            for name in ("posterior", WEIGHTED_GROUP):
                groups[name] = weighted[name].to_dataset()
        tree = xr.DataTree.from_dict(groups)
        if len(groups) > 1:
            tree.attrs.update(weighted.attrs)
        return tree
