"""ULA step-size selection by the KSD (issue 19, acceptance 5) and its figure."""

import jax
import numpy as np
import pytest

import ebm_ppl as ep
from ebm_ppl.diagnostics.step_size import _refine

EX41 = ep.targets.anisotropic_gaussian_2d()
X0 = np.tile(EX41.mean + np.array([3.0, -3.0]), (8, 1))  # chains start away from the mode


def test_refinement_finds_the_vertex_of_a_log_log_parabola():
    steps = np.geomspace(1e-3, 1e-1, 7)
    ksd = np.exp(0.7 * (np.log(steps) - np.log(0.013)) ** 2 + 0.1)
    assert _refine(steps, ksd) == pytest.approx(0.013, rel=1e-9)
    assert _refine(steps, ksd[::-1] * 0 + np.arange(7.0) + 1) == steps[0]  # minimum at an end


def test_selection_trades_bias_against_budget_and_plots():
    grid = (2.5e-4, 2e-3, 1.9e-2)
    sel = ep.diagnostics.select_step_size(EX41, X0, grid, num_gradients=8000,
                                          key=jax.random.key(0), num_repeats=2, max_draws=400)
    # too small: still near the start; too large (near 2 lambda_min = 0.02): eq. 73's bias
    assert sel.best_on_grid == 2e-3, sel.ksd
    assert sel.ksd[1] < 0.5 * min(sel.ksd[0], sel.ksd[2])
    assert sel.num_steps <= 8000 // 8 and sel.draws[2e-3].shape == (8, 50, 2)
    fig = ep.plots.plot_step_size_selection(sel, reference=sel)
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_legend() is not None
    with pytest.raises(ValueError, match="preconditioner"):
        ep.diagnostics.select_step_size(EX41, X0, grid, num_gradients=800, key=jax.random.key(0),
                                        preconditioner="med")


@pytest.mark.slow
def test_selected_step_within_factor_two_of_the_fine_grid_optimum():
    budget, repeats = 20_000, 8
    fine = ep.diagnostics.select_step_size(EX41, X0, np.geomspace(5e-4, 1.9e-2, 16),
                                           num_gradients=budget, key=jax.random.key(100),
                                           num_repeats=repeats)
    optimum = fine.best_on_grid
    for seed in range(3):
        sel = ep.diagnostics.select_step_size(EX41, X0, np.geomspace(2.5e-4, 1.6e-2, 5),
                                              num_gradients=budget, key=jax.random.key(seed),
                                              num_repeats=repeats)
        print(f"seed {seed}: selected h = {sel.best:.4g}, fine-grid optimum {optimum:.4g}, "
              f"ratio {sel.best / optimum:.2f}")
        assert 0.5 <= sel.best / optimum <= 2.0, (sel.best, optimum, sel.ksd, fine.ksd)
