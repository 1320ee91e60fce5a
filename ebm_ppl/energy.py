"""Energies: U(x) = -log(unnormalized density), as NumPyro potential functions.

An [`Energy`][ebm_ppl.energy.Energy] wraps a potential over a *flat* real vector of length ``dim`` (what every
kernel and the annealing engine move), together with the map back to the user's structure
(a pytree for plain functions, constrained sample sites for NumPyro models).

* [`energy_from_fn`][ebm_ppl.energy.energy_from_fn] -- a plain JAX function of an array or a pytree.
* [`energy_from_model`][ebm_ppl.energy.energy_from_model] -- a NumPyro model: U is NumPyro's unconstrained
potential, split
  into ``-log_prior(z) - log_likelihood(z)`` (the prior term includes the Jacobian of the
  unconstraining transform), with a prior sampler in unconstrained space.
"""

from __future__ import annotations

import copy
import functools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .errors import check_key, check_model_data

Array = jax.Array


@dataclass(frozen=True)
class Energy:
    """A potential ``U`` on R^dim with the map back to the user's parameter structure.

    Attributes:
        potential_fn: flat array of shape ``(dim,)`` -> scalar U.
        dim: number of real coordinates.
        unravel: flat array -> the user's structure (pytree or constrained sites).
        name: a label used in results and plots.
    """

    potential_fn: Callable[[Array], Array]
    dim: int
    unravel: Callable[[Array], Any] = field(default=lambda x: x)
    name: str = "energy"

    def __post_init__(self):
        if not callable(self.potential_fn):
            raise ValueError(
                f"potential_fn must be callable, got {type(self.potential_fn).__name__}")
        if isinstance(self.dim, bool) or not isinstance(self.dim, int | np.integer) or self.dim <= 0:
            raise ValueError(f"dim must be a positive integer, got {self.dim!r}")

    def __call__(self, x: Array) -> Array:
        return self.potential_fn(x)

    def batch(self, xs: Array) -> Array:
        """U at each row of ``xs`` (shape ``(n, dim)``)."""
        return jax.vmap(self.potential_fn)(xs)

    def constrain(self, x: Array) -> Any:
        """Map a flat (unconstrained) point to the user's structure."""
        return self.unravel(x)


@dataclass(frozen=True)
class ModelEnergy(Energy):
    """The energy of a NumPyro model's posterior, with prior and likelihood kept apart.

    ``-potential_fn(z) == log_prior_fn(z) + log_likelihood_fn(z)`` for every unconstrained
    ``z``; ``log_prior_fn`` is a normalized density on R^dim (it includes the Jacobian), so
    likelihood tempering from it starts at log Z_0 = 0.
    """

    log_prior_fn: Callable[[Array], Array] = None
    log_likelihood_fn: Callable[[Array], Array] = None
    sample_prior: Callable[[Array, int], Array] = None
    site_names: tuple = ()
    structure: Any = None
    data: tuple = ()


def _check_scalar_energy(value, where: str, name: str = "potential_fn"):
    shape = jnp.shape(value)
    if shape != ():
        raise ValueError(
            f"{name} must return one scalar per point, but returned shape {shape} at {where}"
        )
    dtype = jnp.result_type(value)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name} must return a float, but returned dtype {dtype} at {where}")
    if not np.isfinite(float(value)):  # on the host: no program to compile
        raise ValueError(f"{name} is not finite ({float(value)}) at {where}")


def _flat_identity(x):
    return x


def energy_from_fn(fn: Callable, example, *, name: str = "energy") -> Energy:
    """Wrap a plain JAX potential ``fn(position) -> scalar`` of an array or a pytree.

    ``example`` is one valid position; it fixes the structure and dimension and is used to
    check, before any sampling, that ``fn`` returns one finite float scalar.
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}")
    try:
        flat, unravel = ravel_pytree(jax.tree.map(jnp.asarray, example))
    except Exception as err:  # noqa: BLE001 -- anything un-ravelable is a user input error
        raise ValueError(f"example must be an array or a pytree of arrays: {err}") from None
    if flat.size == 0:
        raise ValueError("example has no coordinates (size 0)")
    if not jnp.issubdtype(flat.dtype, jnp.floating):
        flat = flat.astype(jnp.result_type(float))

    if isinstance(example, jax.Array | np.ndarray) and np.ndim(example) == 1 and \
            flat.dtype == jnp.asarray(example).dtype:
        # a flat array needs no unraveling: keep the user's own function (and a module-level
        # unravel) so that compiled stages keyed on them are reused across calls
        potential_fn, unravel = fn, _flat_identity
    else:
        def potential_fn(x):
            return fn(unravel(x))

    try:
        value = potential_fn(flat)
    except (TypeError, ValueError) as err:
        raise ValueError(f"fn failed at the example point of shape {flat.shape}: {err}") from None
    _check_scalar_energy(value, "the example point", name="fn")
    return Energy(potential_fn=potential_fn, dim=int(flat.size), unravel=unravel, name=name)


def _bernoulli_logits_log_prob(logits, value):
    """``y l - softplus(l)``: NumPyro's ``BernoulliLogits.log_prob`` at finite logits (the
    same function; NumPyro writes it ``-(max(l, 0) + log1p(exp(-|l|)) - l y)`` behind a guard
    for infinite logits, whose value-and-gradient cost ~1.3x this form's in
    ``benchmarks/model_gradient_cost.py``). An infinite logit (a parameter at infinity)
    gives NaN here, which the moves reject."""
    return value * logits - jax.nn.softplus(logits)


def _fixed_support(fn) -> bool:
    """Whether the support of ``fn`` (and of every distribution it wraps) depends on no
    parameter: then NumPyro's per-call support check is a check of the value alone."""
    from numpyro.distributions import Distribution

    while isinstance(fn, Distribution):
        try:
            if jax.tree.leaves(fn.support):
                return False
        except NotImplementedError:
            return False
        fn = getattr(fn, "base_dist", None)
    return True


def _without_validation(fn):
    """A shallow copy of ``fn`` (and of the distributions it wraps) without NumPyro's
    per-call support check (NumPyro >= 0.22 validates by default)."""
    from numpyro.distributions import Distribution

    if not getattr(fn, "_validate_args", False) and not hasattr(fn, "base_dist"):
        return fn
    new = copy.copy(fn)
    new._validate_args = False
    base = getattr(fn, "base_dist", None)
    if isinstance(base, Distribution):
        new.base_dist = _without_validation(base)
    return new


def _log_prob(fn, value, intermediates=None):
    """``fn.log_prob(value)`` elementwise, the numbers NumPyro computes, at a lower cost.

    NumPyro (>= 0.22) checks at every call that ``value`` is in the support (an ``isfinite``
    and a select per element even for a Normal). When the support depends on no parameter,
    that check concerns the value alone: latent values come from the bijection onto the
    support, and the observed data are checked once per call of `energy_from_model`
    (``checked_potential``), so it is skipped here. Supports that depend on parameters
    (``Uniform(0, theta)``) keep it. Bernoulli with logits takes
    `_bernoulli_logits_log_prob`. Together these made the 1.9x of NumPyro's potential
    over a hand-written logistic regression (``benchmarks/model_gradient_cost.py``).
    """
    from numpyro.distributions import BernoulliLogits, Independent
    from numpyro.distributions.util import sum_rightmost

    if not intermediates and _fixed_support(fn):
        fn = _without_validation(fn)
        if type(fn) is Independent and type(fn.base_dist) is BernoulliLogits:
            return sum_rightmost(_bernoulli_logits_log_prob(fn.base_dist.logits, value),
                                 fn.reinterpreted_batch_ndims)
        if type(fn) is BernoulliLogits:
            return _bernoulli_logits_log_prob(fn.logits, value)
    return fn.log_prob(value, intermediates) if intermediates else fn.log_prob(value)


def _site_log_prob(site) -> Array:
    lp = jnp.sum(_log_prob(site["fn"], site["value"], site["intermediates"]))
    return lp if site["scale"] is None else site["scale"] * lp


def _log_joint(model, args, kwargs, params):
    """NumPyro's ``log_density`` of ``model`` at unconstrained ``params`` (its
    ``potential_energy`` negated: the same substitution, site order and sums), with the
    site log-probabilities of `_log_prob`."""
    from numpyro import handlers
    from numpyro.infer.util import _unconstrain_reparam
    from numpyro.distributions.util import is_identically_one

    with handlers.block():
        tr = handlers.trace(handlers.substitute(
            model, substitute_fn=functools.partial(_unconstrain_reparam, params))
        ).get_trace(*args, **kwargs)
    terms = []
    for site in tr.values():
        if site["type"] == "sample":
            lp = _log_prob(site["fn"], site["value"], site["intermediates"])
            scale = site["scale"]
            if scale is not None and not is_identically_one(scale):
                lp = scale * lp
            terms.append(jnp.sum(lp))
    return sum(terms, start=0.0)


class _ModelStructure:
    """What `energy_from_model` learns from one concrete run of a model, kept per
    (model, argument structure, non-array arguments, array shapes and dtypes): the sample
    sites, their transforms and the flat layout. Its methods take the model's array arguments
    (``data``) as a traced argument, so a compiled program built on them serves every data
    set of the same shapes (as NumPyro's ``dynamic_args``/``jit_model_args``). The bound
    methods are stable objects: cache keys of compiled stages."""

    def __init__(self, model, treedef, static, data_index, init: _Initialization, observed):
        self.model, self.treedef, self.static = model, treedef, dict(static)
        self.data_index = tuple(data_index)
        self.potential_gen, self.postprocess_gen = init.potential_gen, init.postprocess_gen
        self.flat0, self.unravel_dict = init.flat0, init.unravel
        self.find_point = init.find_point
        self.site_names = init.site_names
        self.transforms = {n: _biject_to(init.supports[n]) for n in self.site_names}
        self.observed = tuple(observed)
        self.checked_potential = jax.jit(self.numpyro_potential)

    def args(self, data):
        return _model_args(self.treedef, self.static, self.data_index, data)

    def numpyro_potential(self, z, data):
        """NumPyro's own potential energy (with its support checks of the data)."""
        args, kwargs = self.args(data)
        return self.potential_gen(*args, **kwargs)(self.unravel_dict(z))

    def potential(self, z, data):
        """NumPyro's potential energy at ``z`` (the same numbers as ``potential_gen``; see
        `_log_joint` for the cheaper site log-probabilities)."""
        args, kwargs = self.args(data)
        return -_log_joint(self.model, args, kwargs, self.unravel_dict(z))

    def _constrained_trace(self, z, data):
        from numpyro import handlers

        args, kwargs = self.args(data)
        u = self.unravel_dict(z)
        values = {n: self.transforms[n](u[n]) for n in u}
        with handlers.block():
            tr = handlers.trace(handlers.substitute(handlers.seed(self.model, 0), data=values)
                                ).get_trace(*args, **kwargs)
        return u, values, tr

    def log_prior(self, z, data):
        u, values, tr = self._constrained_trace(z, data)
        total = 0.0
        for n in u:
            site = tr[n]
            total = total + _site_log_prob(site)
            ldj = jnp.sum(self.transforms[n].log_abs_det_jacobian(u[n], values[n]))
            total = total + (ldj if site["scale"] is None else site["scale"] * ldj)
        return total

    def neg_log_prior(self, z, data):
        return -self.log_prior(z, data)

    def log_likelihood(self, z, data):
        _, _, tr = self._constrained_trace(z, data)
        total = 0.0
        for n in self.observed:  # observed sites, numpyro.factor terms included
            total = total + _site_log_prob(tr[n])
        return total

    def sample_prior(self, rng_key, num_samples: int, data):
        import numpyro

        args, kwargs = self.args(data)
        draws = numpyro.infer.Predictive(
            self.model, num_samples=int(num_samples), return_sites=list(self.site_names))(
            rng_key, *args, **kwargs)
        unconstrained = {n: self.transforms[n].inv(draws[n]) for n in self.site_names}
        return jax.vmap(lambda u: ravel_pytree(u)[0])(unconstrained)

    def unravel(self, z, data):
        args, kwargs = self.args(data)
        return self.postprocess_gen(*args, **kwargs)(self.unravel_dict(z))


def _biject_to(support):
    from numpyro.distributions.transforms import biject_to

    return biject_to(support)


_STRUCTURES: OrderedDict = OrderedDict()
MAX_CACHED_MODELS = 64


def _model_args(treedef, static: dict, data_index, data):
    """The model's ``(args, kwargs)`` from its non-array leaves and its arrays ``data``."""
    leaves = [None] * (len(static) + len(data_index))
    for i, v in static.items():
        leaves[i] = v
    for i, v in zip(data_index, data):
        leaves[i] = v
    return jax.tree.unflatten(treedef, leaves)


def _split_data(model_args, model_kwargs):
    """The model's arguments as (treedef, non-array leaves by position, array leaves)."""
    leaves, treedef = jax.tree.flatten((tuple(model_args), dict(model_kwargs)))
    arrays = [i for i, v in enumerate(leaves) if isinstance(v, jax.Array | np.ndarray)]
    static = tuple((i, v) for i, v in enumerate(leaves) if i not in set(arrays))
    return treedef, static, arrays, tuple(leaves[i] for i in arrays)


def _structure_key(model, treedef, static, data):
    key = (model, treedef, static,
           tuple((tuple(np.shape(v)), str(jnp.result_type(v))) for v in data))
    try:
        hash(key)
    except TypeError:  # an unhashable non-array argument: no reuse across calls
        return None
    return key


def energy_from_model(model: Callable, *model_args, key=None, name: str | None = None,
                      **model_kwargs) -> ModelEnergy:
    """The unconstrained posterior energy of a NumPyro model, split into prior and likelihood.

    ``U(z) = -[log p(theta(z)) + log|J(z)|] - log p(y | theta(z))`` (seed eq. 1 with the
    unconstraining change of variables), exactly NumPyro's potential energy. Observed sites
    form the likelihood; every other sample site is a latent variable of the prior.

    The model's array arguments are kept apart (``energy.data``) from what one run of the
    model teaches (sites, transforms, layout: ``energy.structure``, reused for every later
    call with the same model and argument shapes), so compiled programs built on
    ``energy.structure``'s functions serve new data without recompiling.
    """
    if not callable(model):
        raise ValueError(f"model must be a callable NumPyro model, got {type(model).__name__}")
    key = None if key is None else check_key(key)
    check_model_data(model_args, model_kwargs)  # before anything compiles, even the key
    treedef, static, data_index, data = _split_data(model_args, model_kwargs)
    cache_key = _structure_key(model, treedef, static, data)
    structure = _STRUCTURES.get(cache_key) if cache_key is not None else None
    new = structure is None
    if new:
        key = jax.random.key(0) if key is None else key
        structure = _model_structure(model, key, model_args, model_kwargs, treedef, static,
                                     data_index, data)
    value = structure.checked_potential(structure.flat0, data)
    if structure.find_point is not None and jnp.shape(value) == () and \
            not np.isfinite(float(value)):  # the origin is not valid here: NumPyro's search
        key = jax.random.key(0) if key is None else key
        point = structure.find_point(key, data)
        if point is None and new:  # as before the origin: NumPyro's own run, its own errors
            point = _eager_initialization(model, key, model_args, model_kwargs)[0].flat0
        if point is not None:
            structure.flat0 = point
            value = structure.checked_potential(point, data)
    _check_scalar_energy(value, "the model's initial point", name="the model's potential")
    if new and cache_key is not None:  # cached once it has a valid initial point
        _STRUCTURES[cache_key] = structure
        while len(_STRUCTURES) > MAX_CACHED_MODELS:
            _STRUCTURES.popitem(last=False)
    elif not new:
        _STRUCTURES.move_to_end(cache_key)
    return ModelEnergy(
        potential_fn=functools.partial(structure.potential, data=data),
        dim=int(structure.flat0.size), unravel=functools.partial(structure.unravel, data=data),
        name=name or getattr(model, "__name__", "model"),
        log_prior_fn=functools.partial(structure.log_prior, data=data),
        log_likelihood_fn=functools.partial(structure.log_likelihood, data=data),
        sample_prior=functools.partial(structure.sample_prior, data=data),
        site_names=structure.site_names, structure=structure, data=data)


@dataclass(frozen=True)
class _Initialization:
    """What `_ModelStructure` keeps of NumPyro's ``initialize_model``: its potential and
    postprocess generators, the initial point (flat, and the map back to the sites' dict),
    the latent sites in the model's order with their supports. ``find_point``, when set,
    compiles and runs the initialization for a valid point (the initial point is then the
    unconstrained origin, checked by the caller, and this is its fallback)."""

    potential_gen: Callable
    postprocess_gen: Callable
    flat0: Array
    unravel: Callable
    site_names: tuple
    supports: dict
    find_point: Callable | None = None  # (key, data) -> a valid initial point, or None


def _holds_tracer(obj, depth: int = 12) -> bool:
    """Whether ``obj`` (NumPyro's handlers, generators, transforms and constraints, through
    partials and containers) holds a JAX tracer. User objects (the model itself, its
    closures) are not entered: they existed before the trace, so they cannot hold one."""
    if isinstance(obj, jax.core.Tracer):
        return True
    if depth == 0 or isinstance(obj, jax.Array | np.ndarray | str | bytes | int | float):
        return False
    if isinstance(obj, functools.partial):
        items = [obj.func, *obj.args, *obj.keywords.values()]
    elif isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, list | tuple):
        items = list(obj)
    elif type(obj).__module__.split(".")[0] == "numpyro" and hasattr(obj, "__dict__"):
        items = list(vars(obj).values())
    else:
        return False
    return any(_holds_tracer(v, depth - 1) for v in items)


def _traced_initialization(model, key, treedef, static, data_index, data):
    """NumPyro's ``initialize_model`` run as one compiled program (eagerly, its few dozen
    single operations each compiled a program of their own: ~1 s of a first call's
    compile). The program's outputs are the initial point and the supports that depend on
    values; the generators and the site structure come from its trace, checked to hold no
    tracer. When no support depends on values, nothing is compiled: the initial point is the
    unconstrained origin, which the caller checks, and the program only runs if the model's
    potential is not finite there (`_Initialization.find_point`; ~0.4 s of a first call's
    compile saved). None (the caller then runs it eagerly, with its own errors) when the model
    cannot be traced, when a tracer would leak, or when no valid initial point was found."""
    from numpyro.infer.util import initialize_model

    kept: dict = {}

    def init(key, data):
        args, kwargs = _model_args(treedef, dict(static), data_index, data)
        init_info, potential_gen, postprocess_gen, trace = initialize_model(
            key, model, model_args=args, model_kwargs=kwargs, dynamic_args=True,
            validate_grad=False)
        z = init_info.z
        flat0, unravel = ravel_pytree(z)
        supports = {n: trace[n]["fn"].support for n in z}
        traced = {n: c for n, c in supports.items() if _holds_tracer(c)}
        # the sites in the model's order (as the eager run's z; the loop's output is sorted)
        kept.update(gens=(potential_gen, postprocess_gen), unravel=unravel, trace=trace,
                    names=tuple(n for n in trace if n in z), supports=supports)
        return flat0, jnp.isfinite(init_info.potential_energy), traced

    try:
        traced_init = jax.jit(init).trace(key, data)
        if not kept["names"] or _holds_tracer(kept["gens"]):
            return None
        flat_info, _, traced_info = traced_init.out_info
        if not traced_info:  # no support depends on values: the trace told all but a point
            @functools.cache
            def program():  # compiled on first need, once
                return traced_init.lower().compile()

            def find_point(k, d):
                flat, ok, _ = program()(k, d)
                return flat if bool(ok) else None
            origin = np.zeros(flat_info.shape, flat_info.dtype)
            return _Initialization(*kept["gens"], origin, kept["unravel"], kept["names"],
                                   kept["supports"], find_point), kept["trace"]
        program = traced_init.lower().compile()
    except Exception:  # noqa: BLE001 -- the eager run reports the model's own error
        return None
    flat0, valid, traced = program(key, data)
    if not bool(valid):
        return None
    supports = {n: traced.get(n, c) for n, c in kept["supports"].items()}
    return _Initialization(*kept["gens"], flat0, kept["unravel"], kept["names"],
                           supports), kept["trace"]


def _eager_initialization(model, key, model_args, model_kwargs):
    """NumPyro's ``initialize_model`` run concretely; its errors name what went wrong."""
    from numpyro.infer.util import initialize_model

    try:
        init_info, potential_gen, postprocess_gen, trace = initialize_model(
            key, model, model_args=model_args, model_kwargs=model_kwargs, dynamic_args=True,
            validate_grad=False)
    except RuntimeError as err:
        raise ValueError(f"cannot initialize the model: {err}") from None
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"the model failed with the given data: {err}") from None
    flat0, unravel = ravel_pytree(init_info.z)
    supports = {n: s["fn"].support for n, s in trace.items()
                if s["type"] == "sample" and not s["is_observed"]}
    return _Initialization(potential_gen, postprocess_gen, flat0, unravel, tuple(init_info.z),
                           supports), trace


def _model_structure(model, key, model_args, model_kwargs, treedef, static, data_index, data):
    """Learn the model's sites from one run of NumPyro's initialization (compiled as one
    program, or concretely when it cannot be); errors name what went wrong."""
    from numpyro import handlers

    discrete = []

    def latent_discrete(k):  # traced abstractly (jax.eval_shape): no program is compiled
        with handlers.block():
            tr = handlers.trace(handlers.seed(model, k)).get_trace(*model_args, **model_kwargs)
        discrete.extend(n for n, s in tr.items() if s["type"] == "sample"
                        and not s["is_observed"] and s["fn"].support.is_discrete)
        return 0

    try:  # find discrete latent sites first: initialize_model would try to enumerate them
        jax.eval_shape(latent_discrete, key)
    except Exception:  # noqa: BLE001 -- initialize_model below reports the model's own error
        discrete = []
    if discrete:
        raise ValueError(f"discrete latent sites are not supported: {discrete}")
    found = _traced_initialization(model, key, treedef, static, data_index, data)
    init, trace = found if found is not None else _eager_initialization(
        model, key, model_args, model_kwargs)
    latent = {n: s for n, s in trace.items()
              if s["type"] == "sample" and not s["is_observed"]}
    if not latent:
        raise ValueError("the model has no latent sample sites: nothing to infer")
    discrete = [n for n, s in latent.items() if s["fn"].support.is_discrete]
    if discrete:
        raise ValueError(f"discrete latent sites are not supported: {discrete}")
    observed = [n for n, s in trace.items() if s["type"] == "sample" and s["is_observed"]]
    return _ModelStructure(model, treedef, static, data_index, init, observed)


def as_energy(obj, *, dim: int | None = None, name: str = "energy") -> Energy:
    """Coerce an [`Energy`][ebm_ppl.energy.Energy], a target from [`ebm_ppl.targets`][ebm_ppl.targets] or a
    plain function
    of a flat ``(dim,)`` array into an [`Energy`][ebm_ppl.energy.Energy]."""
    if isinstance(obj, Energy):
        if dim is not None and dim != obj.dim:
            raise ValueError(f"dim={dim} does not match the energy's dimension {obj.dim}")
        return obj
    energy = getattr(obj, "energy", None)
    if isinstance(energy, Energy):
        return as_energy(energy, dim=dim)
    if not callable(obj):
        raise ValueError(f"potential_fn must be callable, got {type(obj).__name__}")
    if dim is None:
        raise ValueError("dim is required when potential_fn is a plain function")
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim <= 0:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    return energy_from_fn(obj, jnp.zeros(int(dim)), name=name)
