"""Issue 16: ``ep.compare_evidence`` on three conjugate polynomial regressions with exact
Bayes factors, the refusal of evidences of different data, and its figure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebm_ppl as ep
from ebm_ppl.demo_evidence import ALPHA, SIGMA, demo_data, exact_log_evidence, polynomial_regression

DEGREES = (1, 2, 3)


def exact_posterior_draws(x, y, degree, seed, chains=4, draws=1000):
    """The conjugate posterior of the weights, N(A^-1 Phi^T y / s^2, A^-1) with
    A = alpha I + Phi^T Phi / s^2, drawn exactly (independent draws, as from a perfect sampler)."""
    phi = np.stack([x**k for k in range(degree + 1)], axis=-1)
    prec = ALPHA * np.eye(degree + 1) + phi.T @ phi / SIGMA**2
    cov = np.linalg.inv(prec)
    mean = cov @ phi.T @ y / SIGMA**2
    rng = np.random.default_rng(seed)
    return {"w": rng.multivariate_normal(mean, cov, size=(chains, draws))}


def bridge(x, y, degree, seed=0):
    return ep.bridge_sampling(exact_posterior_draws(x, y, degree, seed), polynomial_regression,
                              jnp.asarray(x), jnp.asarray(y), degree=degree,
                              key=jax.random.key(seed))


@pytest.fixture(scope="module")
def polys():
    x, y = demo_data()
    return x, y, {f"degree {d}": bridge(x, y, d, seed=d) for d in DEGREES}


def test_bayes_factors_within_4_se_of_exact(polys):
    x, y, results = polys
    table = ep.compare_evidence(results)
    exact = {f"degree {d}": exact_log_evidence(x, y, d) for d in DEGREES}
    best = max(exact, key=exact.get)
    assert table.index[0] == best == "degree 2" and list(table["rank"]) == [0, 1, 2]
    for name, row in table.iterrows():
        bf_exact = exact[name] - exact[best]
        if name == best:
            assert row.log_bf == 0 and row.log_bf_se == 0
            continue
        assert abs(row.log_bf - bf_exact) < 4 * row.log_bf_se, (name, row.log_bf, bf_exact)
        assert row.log_bf_se == pytest.approx(np.hypot(row.se, table.loc[best, "se"]))
    # probabilities: sum to one, match Bayes' rule on the exact evidences, intervals hold them
    assert table["prob"].sum() == pytest.approx(1.0, abs=1e-12)
    lz = np.array([exact[n] for n in table.index])
    p_exact = np.exp(lz - lz.max()) / np.exp(lz - lz.max()).sum()
    assert np.all(table["prob_lower"] <= table["prob"]) and np.all(table["prob"] <= table["prob_upper"])
    np.testing.assert_allclose(table["prob"], p_exact, atol=0.01)


def test_prior_probabilities_shift_posterior_probabilities(polys):
    _, _, results = polys
    flat = ep.compare_evidence(results)
    tilted = ep.compare_evidence(results, prior_probs={"degree 1": 0.98, "degree 2": 0.01,
                                                       "degree 3": 0.01})
    odds = lambda t: t.loc["degree 1", "prob"] / t.loc["degree 2", "prob"]  # noqa: E731
    assert odds(tilted) == pytest.approx(98 * odds(flat), rel=1e-9)
    assert tilted["prob"].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="prior_probs lacks"):
        ep.compare_evidence(results, prior_probs={"degree 1": 1.0})
    with pytest.raises(ValueError, match="positive"):
        ep.compare_evidence(results, prior_probs=[1, 0, 1])


def test_interval_reflects_the_evidence_errors(polys):
    """Two models with equal evidence: probability 1/2 each, interval widening with se."""
    _, _, results = polys
    r = results["degree 2"]
    import dataclasses
    narrow = ep.compare_evidence([r, dataclasses.replace(r, log_z_se=r.log_z_se)])
    wide = ep.compare_evidence([dataclasses.replace(r, log_z_se=0.5),
                                dataclasses.replace(r, log_z_se=0.5)])
    for t in (narrow, wide):
        np.testing.assert_allclose(t["prob"], 0.5)
    # the difference of two N(0, 0.5^2): P = sigmoid(N(0, 0.5)) has a 95% interval ~ +-0.24
    assert wide["prob_upper"].iloc[0] == pytest.approx(1 / (1 + np.exp(-1.96 * 0.5 * np.sqrt(2))),
                                                       abs=0.01)
    assert narrow["prob_upper"].iloc[0] - narrow["prob_lower"].iloc[0] < 0.02


def test_results_on_different_data_are_refused(polys):
    x, y, results = polys
    other = bridge(x, y + 0.01, 2, seed=9)
    with pytest.raises(ValueError, match="different observed data"):
        ep.compare_evidence({"degree 1": results["degree 1"], "degree 2 (other y)": other})
    table = ep.compare_evidence({"a": results["degree 1"], "b": other}, check_data=False)
    assert len(table) == 2
    with pytest.warns(UserWarning, match="cannot check"):
        import dataclasses
        ep.compare_evidence([results["degree 1"],
                             dataclasses.replace(results["degree 2"], data_fingerprint=None)])
    with pytest.raises(ValueError, match="at least 2"):
        ep.compare_evidence([results["degree 1"]])
    with pytest.raises(TypeError, match="not an evidence result"):
        ep.compare_evidence({"a": results["degree 1"], "b": 1.0})


def test_comparison_figure(polys):
    x, y, results = polys
    table = ep.compare_evidence(results)
    fig = ep.plots.plot_evidence_comparison(
        table, exact={f"degree {d}": exact_log_evidence(x, y, d) for d in DEGREES})
    axes = [a for a in fig.axes if a.has_data()]
    assert len(axes) == 2 and all(a.get_title() and a.get_xlabel() for a in axes)
    assert [t.get_text() for t in axes[1].get_yticklabels()] == list(table.index)
    heights = sorted(p.get_width() for p in axes[1].patches)
    np.testing.assert_allclose(heights, sorted(table["prob"]))
