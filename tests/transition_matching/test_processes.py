import numpy as np
import pytest
import torch

from runkit.errors import UserError
from transition_matching.processes import (
    head_path,
    independent_process,
    linear_process,
    parse_schedule,
)


def test_dtm_pairs_step_by_y_over_t_and_end_at_the_data():
    """Contract (a): X_{t+1} = X_t + Y / T with one shared X_0, and X_T is the data."""
    g = torch.Generator().manual_seed(0)
    X_T, X_0 = torch.randn(64, 3, 2, generator=g), torch.randn(64, 3, 2, generator=g)
    T = 8
    path = linear_process(X_T, X_0, T)
    assert path.X.shape == (T + 1, 64, 3, 2)
    assert torch.equal(path.X[0], X_0) and torch.allclose(path.X[T], X_T)
    for t in range(T):
        assert torch.allclose(path.X[t + 1], path.X[t] + path.Y / T, atol=1e-6)
        noise = (path.X[t] - (t / T) * X_T) / (1 - t / T)  # the same X_0 at every t
        assert torch.allclose(noise, X_0, atol=1e-5)


def test_head_target_is_recovered_from_y_s_and_s():
    """Contract (b): Y_s = (1 - s) Y_0 + s Y, so Y - Y_0 = (Y - Y_s) / (1 - s) and Y_0 = Y_s - s (Y - Y_0)."""
    Y = torch.randn(1000, 4, generator=torch.Generator().manual_seed(1))
    p = head_path(Y, torch.Generator().manual_seed(2))
    assert torch.allclose(p.target, Y - p.Y_0)
    assert torch.allclose(p.Y_s + (1 - p.s)[:, None] * p.target, Y, atol=1e-5)
    assert torch.allclose(p.Y_s - p.s[:, None] * p.target, p.Y_0, atol=1e-5)
    assert p.s.min() >= 0 and p.s.max() <= 1 and p.s.std() > 0.2  # s ~ U[0, 1] per row


def test_independent_process_draws_fresh_noise_per_t():
    """Contract (d, first half): ARTM/FHTM states have independent noise at every t."""
    schedule = [0, 0.5, 0.75, 1]
    X_T = torch.randn(4000, 1, 2, generator=torch.Generator().manual_seed(0))
    X = independent_process(X_T, schedule, torch.Generator().manual_seed(1))
    assert X.shape == (4, 4000, 1, 2) and torch.equal(X[-1], X_T)
    noise = [((X[k] - f * X_T) / (1 - f)).flatten().numpy() for k, f in enumerate(schedule[:-1])]
    corr = np.corrcoef(np.stack(noise))
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.05
    assert all(abs(n.std() - 1) < 0.05 for n in noise)


def test_schedules():
    assert parse_schedule(None, 4) == [0, 0.25, 0.5, 0.75, 1]
    assert parse_schedule("0,0.5,0.75,1", 99) == [0, 0.5, 0.75, 1]
    for bad in ("0,0.7,0.5,1", "0.1,1", "a,b"):
        with pytest.raises(UserError):
            parse_schedule(bad, 3)
    with pytest.raises(UserError):
        parse_schedule(None, 0)
