"""Figures: each is produced with titles, labelled axes and legends where several lines share
an axes, saves to PNG, and plots the right numbers (exact curves checked against known values)."""

import math
import types

import jax
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import ebm_ppl as ep  # noqa: E402
from ebm_ppl import diagnostics as dg  # noqa: E402
from ebm_ppl import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def check_figure(fig, path, *, min_axes=1):
    """A Figure with a title; every visible axes titled and labelled; legends on shared axes."""
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) >= min_axes
    assert fig._suptitle is not None and fig._suptitle.get_text()
    for ax in axes:
        assert ax.get_title(), "an axes has no title"
        assert ax.get_xlabel() and ax.get_ylabel(), f"axes {ax.get_title()!r} is not labelled"
        labelled = [h for h in ax.get_legend_handles_labels()[1] if not h.startswith("_")]
        if len(labelled) > 1:
            assert ax.get_legend() is not None, f"axes {ax.get_title()!r} needs a legend"
    fig.savefig(path, dpi=50)
    assert path.stat().st_size > 1000


def test_figure1_density_histogram_energy(tmp_path):
    fig = plots.plot_figure1(key=jax.random.key(0), num_samples=5000)
    check_figure(fig, tmp_path / "fig1.png", min_axes=2)
    ax_p, ax_u = fig.axes
    x, density = ax_p.get_lines()[0].get_data()
    assert np.trapezoid(density, x) == pytest.approx(1.0, abs=1e-3)  # normalized by log Z
    target = ep.targets.figure1_mixture()
    xu, u = ax_u.get_lines()[0].get_data()
    assert u[np.argmin(np.abs(xu - 5.0))] == pytest.approx(float(target(np.array([5.0]))), abs=0.05)


def test_kl_vs_fisher_figure4(tmp_path):
    curves = plots.kl_fisher_curves([0.0, 2.0, 4.0], (100, 1000), key=jax.random.key(1))
    assert curves["exact_kl"][1] == pytest.approx(0.4337803501, rel=1e-6)
    assert curves["exact_fisher"][1] == pytest.approx(1.244e-5, rel=1e-3)
    assert curves[1000]["kl"][0] == 0.0 and curves[1000]["fisher"][0] == 0.0  # rho1 == rho2
    assert abs(curves[1000]["kl"][1] - 0.4337803501) < 3 * curves[1000]["kl_se"][1]
    fig = plots.plot_kl_vs_fisher(curves=curves)
    check_figure(fig, tmp_path / "fig4.png", min_axes=2)
    assert len(fig.axes[0].get_lines()) == 3  # N=100, N=1000, exact


def test_ula_covariance_theory_and_simulation(tmp_path):
    target = ep.targets.anisotropic_gaussian_2d()
    report = dg.sampler_bias_report(target, key=jax.random.key(2), ula_step_sizes=(0.01, 0.018),
                                    mala=False, nuts=False, num_chains=4, num_warmup=300,
                                    num_samples=1000, progress_bar=False)
    fig = plots.plot_ula_covariance(target, report=report)
    check_figure(fig, tmp_path / "ula.png", min_axes=2)
    h, theory = fig.axes[1].get_lines()[0].get_data()
    i = np.argmin(np.abs(h - 0.015))
    # the stiff axis follows eq. 73: 0.01 / (1 - h / 0.02)
    assert theory[i] == pytest.approx(0.01 / (1 - h[i] / 0.02))
    assert target.ula_kl(0.015) == pytest.approx(0.806867, rel=1e-5)


def test_trace_rank_and_bias_report_figures(tmp_path):
    report = dg.sampler_bias_report(ep.targets.anisotropic_gaussian_2d(), key=jax.random.key(3),
                                    ula_step_sizes=(0.015,), nuts=False, num_chains=4,
                                    num_warmup=200, num_samples=500, progress_bar=False)
    chains = {"x": report.draws["MALA"]}
    check_figure(plots.plot_trace(chains), tmp_path / "trace.png", min_axes=2)
    check_figure(plots.plot_rank(chains), tmp_path / "rank.png", min_axes=2)
    fig = plots.plot_bias_report(report, statistics=["mean[0]", "var_pc[1]"])
    check_figure(fig, tmp_path / "bias.png", min_axes=2)
    with pytest.raises(ValueError, match="statistics"):
        plots.plot_bias_report(report, statistics=["nope"])


def _is_run(seed, n):
    """Importance sampling of U = |x - 1|^2 / 2 in 2-D from N(0, 2^2 I): an evidence-like result
    (log Z exact = log 2 pi) with the attribute names of ep.evidence's EvidenceResult."""
    rng = np.random.default_rng(seed)
    x = 2.0 * rng.standard_normal((n, 2))
    log_q = -0.5 * np.sum((x / 2.0) ** 2, axis=1) - math.log(8.0 * math.pi)
    lw = -0.5 * np.sum((x - 1.0) ** 2, axis=1) - log_q
    groups = lw.reshape(8, -1)
    glz = np.log(np.mean(np.exp(groups - groups.max()), axis=1)) + groups.max()
    z = np.exp(glz - glz.max())
    return types.SimpleNamespace(
        log_z=float(np.log(np.mean(np.exp(lw - lw.max()))) + lw.max()),
        log_z_se=float(z.std(ddof=1) / math.sqrt(z.size) / z.mean()), samples=x,
        log_weights=lw, ess=np.array([dg.kish_ess(lw) / n]), schedule=np.array([0.0, 1.0]),
        num_gradient_evals=n)


def test_evidence_runs_figure(tmp_path):
    runs = {"IS": [_is_run(s, n) for s, n in ((0, 800), (1, 3200), (2, 12800))]}
    best = runs["IS"][-1]
    assert abs(best.log_z - math.log(2 * math.pi)) < 4 * best.log_z_se
    fig = plots.plot_evidence(runs, truth=math.log(2 * math.pi))
    check_figure(fig, tmp_path / "evidence.png", min_axes=4)
    assert dg.summary(best).loc["x[0]", "ess_kish"] == pytest.approx(dg.kish_ess(best.log_weights))
    with pytest.raises(ValueError, match="num_gradient_evals"):
        plots.plot_evidence(types.SimpleNamespace(log_z=0.0))


def test_training_curves_figure(tmp_path):
    it = np.arange(200)
    histories = {
        "jarzynski": {"iteration": it, "loss": 3.0 + np.exp(-it / 50),
                      "log_z": 1.0 - np.exp(-it / 40),
                      "mode_weights": np.stack([0.5 - 0.25 * (1 - np.exp(-it / 60)),
                                                0.5 + 0.25 * (1 - np.exp(-it / 60))], axis=1)},
        "pcd": {"iteration": it, "loss": 3.2 + np.exp(-it / 30), "log_z": 0.5 + 0 * it},
    }
    fig = plots.plot_training(histories, exact_log_z=1.0, exact_mode_weights=[0.25, 0.75])
    check_figure(fig, tmp_path / "training.png", min_axes=3)
    assert len(fig.axes[2].get_lines()) == 2 + 2  # two recorded weights, two target lines
    # a TrainResult carries the final log Z as a scalar attribute: the curve must come from
    # the history
    result = types.SimpleNamespace(history=histories["jarzynski"], log_z=1.0, method="jarzynski")
    fig = plots.plot_training(result)
    check_figure(fig, tmp_path / "training1.png", min_axes=3)
    assert len(fig.axes[1].get_lines()) == 1 and len(fig.axes[1].get_lines()[0].get_xdata()) == 200


def test_ising_curves_against_exact(tmp_path):
    T_CRITICAL = pytest.importorskip("ebm_ppl.spins").T_CRITICAL  # the spins part may land later
    exact = plots.ising_exact_curves(4, [2.0, T_CRITICAL, 3.0])
    assert exact["energy"][1] == pytest.approx(-1.5656237876, abs=1e-8)  # tests/groundtruth.md
    assert exact["m2"][1] == pytest.approx(0.7613589086, abs=1e-8)
    ts = np.array([1.5, 2.0, 2.5, 3.0, 3.5])
    ref = plots.ising_exact_curves(4, ts)
    fig = plots.plot_ising(ts, energy=ref["energy"], energy_se=np.full(5, 0.01),
                           magnetization=ref["m2"], magnetization_se=np.full(5, 0.01), L=4)
    check_figure(fig, tmp_path / "ising.png", min_axes=2)
    with pytest.raises(ValueError, match="magnetization_kind"):
        plots.plot_ising(ts, magnetization_kind="m4")


def test_bad_input_to_figures():
    with pytest.raises(ValueError, match="1-D target"):
        plots.plot_figure1(ep.targets.anisotropic_gaussian_2d())
    with pytest.raises(ValueError, match="cov"):
        plots.plot_ula_covariance(ep.targets.tilted_double_well())
