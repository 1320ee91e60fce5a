"""keep_modes: mode-guarded resampling (unbiased, every mode keeps walkers) and its runs."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import ebm_ppl as ep
from ebm_ppl.evidence import AnnealOptions
from ebm_ppl.evidence.resampling import (mode_guarded_resample_if, multinomial_resample,
                                         normalize_log_weights)

# 40 walkers: 30 in mode 0 with nearly all the weight, 10 in mode 1 with 1e-3 of it
LABELS = jnp.asarray([0] * 30 + [1] * 10)
LOG_W = jnp.log(jnp.concatenate([jnp.linspace(1.0, 2.0, 30) / 45.0 * 0.999,
                                 jnp.linspace(1.0, 3.0, 10) / 20.0 * 0.001]))
F = jnp.cos(jnp.arange(40.0)) + 3.0 * (LABELS == 1)  # a test function, large on mode 1


def _resampled_means(key, share, corrected=True, reps=4000):
    """Per repetition: the resampled weighted mean of F (normalized as the estimate of Z is:
    ``mean_j w_j f(x_j)`` with ``mean_i W_i = 1/n``), and the slots mode 1 got."""
    def one(k):
        res = mode_guarded_resample_if(k, LOG_W, LABELS, 2, threshold=1.0, share=share)
        w = jnp.exp(res.log_w) if corrected else jnp.ones(40)
        return jnp.mean(w * F[res.indices]), jnp.sum(LABELS[res.indices] == 1)
    return jax.vmap(one)(jax.random.split(key, reps))


def test_mode_guarded_resampling_is_unbiased_and_keeps_the_small_mode():
    exact = float(jnp.sum(jnp.exp(normalize_log_weights(LOG_W)) * F))  # sum_i W_i f(x_i)
    means, slots = _resampled_means(jax.random.key(0), share=0.8)
    means = np.asarray(means)
    se = means.std(ddof=1) / np.sqrt(means.size)
    assert abs(means.mean() - exact) < 4 * se, (means.mean(), exact, se)
    # the guard: mode 1 (weight 1e-3) gets ~ share / 2 = 40% of the slots, not ~0.04 of one
    assert 14 <= float(np.mean(slots)) <= 18
    # the wrong method: the guard's slots without the importance correction is biased
    wrong, _ = _resampled_means(jax.random.key(0), share=0.8, corrected=False)
    wrong = np.asarray(wrong)
    assert abs(wrong.mean() - exact) > 20 * wrong.std(ddof=1) / np.sqrt(wrong.size)


def test_one_mode_is_ordinary_multinomial_resampling():
    key = jax.random.key(3)
    res = mode_guarded_resample_if(key, LOG_W, jnp.zeros(40, int), 1, threshold=1.0)
    np.testing.assert_array_equal(res.indices, multinomial_resample(key, LOG_W))
    np.testing.assert_allclose(res.log_w, 0.0, atol=1e-12)
    kept = mode_guarded_resample_if(key, LOG_W, LABELS, 2, threshold=0.0)  # ESS above: keep
    assert not bool(kept.resampled)
    np.testing.assert_array_equal(kept.log_w, LOG_W)


def test_keep_modes_options():
    opts = AnnealOptions(keep_modes=True)
    assert opts.num_groups == 8 and not opts.bias_check and not opts.precondition
    assert AnnealOptions(keep_modes=True, precondition=True).precondition
    assert AnnealOptions(keep_modes=True, num_groups=4).num_groups == 4
    assert AnnealOptions(keep_modes=True, num_walkers=1000).num_groups == 8
    assert AnnealOptions(keep_modes=True, num_walkers=1001).num_groups == 7
    assert AnnealOptions(keep_modes=True, num_walkers=96).num_groups == 3
    with pytest.raises(ValueError, match="no such split"):
        AnnealOptions(keep_modes=True, num_walkers=1009)  # a prime
    with pytest.raises(ValueError, match="bias probe"):
        AnnealOptions(keep_modes=True, bias_check=True)
    with pytest.raises(ValueError, match="keep_modes"):
        AnnealOptions(method="is", keep_modes=True)
    with pytest.raises(ValueError, match="keep_modes"):
        AnnealOptions(method="gibbs", keep_modes=True)


HARD = ep.targets.two_mode_mixture(10, separation=3, weights=(0.2, 0.8), scales=(1, 0.5),
                                   along_diagonal=False)
BROAD = dist.Normal(jnp.zeros(10), 5.0).to_event(1)


def test_keep_modes_on_the_hard_mixture_finds_both_modes_and_covers():
    """Issue 15's hard mixture from a broad reference: the narrow mode's share dips to 0.5%
    along the path. With keep_modes the error is within the groups' error bar; each of 3 seeds
    is checked (|error| < 3.5 se) and so is their pooled z-score."""
    z = []
    for seed in range(3):
        r = ep.log_partition(HARD, key=jax.random.key(seed), reference=BROAD, method="mala",
                             num_walkers=4096, keep_modes=True, progress_bar=False)
        modes = np.sort(r.reference_info["kept_modes"].mean(axis=1))
        np.testing.assert_allclose(modes, [-3.0, 3.0], atol=1e-3)
        assert r.num_gradient_evals > r.reference_info["mode_search_gradient_evals"] > 0
        assert "found 2 mode(s)" in r.messages[0] and len(r.group_log_z) == 8
        z.append((r.log_z - HARD.log_z) / r.log_z_se)
        assert abs(z[-1]) < 3.5, (seed, r.log_z, r.log_z_se)
    assert abs(np.sum(z)) / np.sqrt(3) < 3.0


def test_keep_modes_with_one_mode_runs_as_usual():
    """A unimodal target: one mode found, resampling unchanged: the same log Z as the same
    groups without keep_modes (the search's gradients added)."""
    target = ep.targets.ill_conditioned_gaussian(4, 10.0, seed=0)
    ref = dist.Normal(jnp.zeros(4), 3.0).to_event(1)
    kw = dict(key=jax.random.key(1), reference=ref, num_walkers=512, progress_bar=False)
    kept = ep.log_partition(target, keep_modes=True, **kw)
    plain = ep.log_partition(target, num_groups=8, bias_check=False, precondition=False, **kw)
    assert "found 1 mode(s): resampling as usual" in kept.messages[0]
    assert kept.log_z == plain.log_z and kept.log_z_se == plain.log_z_se
    assert kept.num_gradient_evals == (plain.num_gradient_evals
                                       + kept.reference_info["mode_search_gradient_evals"])


def test_keep_modes_through_log_evidence_on_a_two_mode_posterior():
    """y ~ N(mu^2, 0.3): the posterior of mu has modes at +-sqrt(mean y). log p(y) from a
    1-D quadrature; keep_modes finds both modes of the model's potential and covers it."""
    import numpyro

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 3.0))
        numpyro.sample("y", dist.Normal(mu**2, 0.3), obs=y)

    y = np.array([4.0, 4.1, 3.9, 4.05])
    grid = np.linspace(-12.0, 12.0, 400_001)
    log_joint = (dist.Normal(0.0, 3.0).log_prob(grid)
                 + dist.Normal(grid[:, None] ** 2, 0.3).log_prob(y).sum(-1))
    top = float(np.max(log_joint))
    exact = top + np.log(np.trapezoid(np.exp(np.asarray(log_joint) - top), grid))
    r = ep.log_evidence(model, y=jnp.asarray(y), key=jax.random.key(0), method="mala",
                        num_walkers=2048, keep_modes=True, progress_bar=False)
    np.testing.assert_allclose(np.sort(r.reference_info["kept_modes"][:, 0]), [-2.0, 2.0],
                               atol=0.05)
    assert abs(r.log_z - exact) < 4 * r.log_z_se, (r.log_z, exact, r.log_z_se)


@pytest.mark.slow
def test_keep_modes_calibration_on_the_hard_mixture():
    """24 seeds at 4096 walkers (MALA): keep_modes' errors are within its error bar (coverage
    of +-2 se at least 75%, mean z-score within 3 standard errors of 0), and its RMSE is at
    most half that of the same runs without it, whose narrow mode's share varies from run to
    run (the wrong method this catches: ordinary resampling of a mode that dips to 0.5%)."""
    kept, plain = [], []
    for seed in range(24):
        kw = dict(key=jax.random.key(500 + seed), reference=BROAD, method="mala",
                  num_walkers=4096, progress_bar=False)
        r = ep.log_partition(HARD, keep_modes=True, **kw)
        kept.append(((r.log_z - HARD.log_z), r.log_z_se))
        p = ep.log_partition(HARD, bias_check=False, **kw)
        plain.append(p.log_z - HARD.log_z)
    err, se = np.asarray(kept).T
    z = err / se
    assert np.mean(np.abs(z) < 2) >= 0.75, z
    assert abs(np.mean(z)) < 3 * np.std(z, ddof=1) / np.sqrt(z.size), z
    rmse_kept, rmse_plain = np.sqrt(np.mean(err**2)), np.sqrt(np.mean(np.square(plain)))
    assert rmse_kept < 0.5 * rmse_plain, (rmse_kept, rmse_plain)
