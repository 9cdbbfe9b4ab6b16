"""The REINFORCE update rules, each term a function of its own so each can be tested.

The search room's learning rules, pure NumPy. The objective is the first article's

    J(theta) = E_{tau ~ p_theta}[R(tau)],

whose gradient (the likelihood-ratio / REINFORCE identity) is

    grad J = E[ sum_t (G_t - b_t) * grad_theta log pi_theta(a_t | s_t) ].

Here a trajectory is one population member's training run cut into segments; `a_t` is the
hyperparameters chosen for segment t, `G_t` the quality that segment adds, and `b_t` the
*population baseline*: the mean reward of the members that trained segment t at the same time.
Subtracting it leaves the gradient unbiased and removes what every member gained just by
training longer, so only choices better than the population's are reinforced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Gradients = dict[str, np.ndarray]


def spread(values: Sequence[float]) -> float:
    """The standard deviation of `values`, floored so that equal values never divide by 0."""
    v = np.asarray(values, dtype=np.float64)
    return max(float(v.std()), 1e-8 * max(1.0, float(np.abs(v).max())))


def population_advantages(rewards: Sequence[float], normalise: bool = True) -> np.ndarray:
    """A_i = (r_i - b) / s with b the population's mean reward and s its spread.

    Args:
        rewards: One finite reward per member of a generation.
        normalise: Divide by the standard deviation (with a floor), so the step size does not
            depend on the objective's units: an FID-sized reward and a loss-sized one teach
            at the same speed, and one outlier cannot take a huge step.

    Returns:
        The advantages, summing to zero.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.size == 0:
        return r
    baseline = r.mean()  # b: the population baseline
    advantages = r - baseline
    if normalise:
        advantages = advantages / spread(r)
    return advantages


def running_advantages(rewards: Sequence[float], baseline: float) -> np.ndarray:
    """A_i = (r_i - b) / s with b a baseline from *earlier* generations (a running mean).

    Unlike the population's own mean, a baseline set before the generation acted lets every
    member's advantage be negative: when all members of a generation (two, after a cut) got
    worse than the members before them, the moves they all made are discouraged, instead of
    one of them being reinforced as "better than the other". b does not depend on the
    actions being judged, so the gradient stays unbiased (Williams 1992's running baseline).
    s is the spread of the rewards and b together (with a floor): scale-free, as above.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.size == 0:
        return r
    return (r - baseline) / spread(np.append(r, baseline))


def failure_reward(rewards: Sequence[float]) -> float:
    """A finite reward below every finite one given: what a diverged member earns."""
    finite = [float(r) for r in rewards if math.isfinite(r)]
    if not finite:
        return -1.0
    low, high = min(finite), max(finite)
    return low - max(1.0, high - low)


def policy_gradient(grad_log_probs: Sequence[Mapping[str, np.ndarray]],
                    advantages: Sequence[float]) -> Gradients:
    """(1/N) sum_i A_i * grad_theta log pi_theta(a_i | s_i), per parameter block."""
    total: Gradients = {}
    n = max(len(grad_log_probs), 1)
    for grads, advantage in zip(grad_log_probs, advantages, strict=True):
        for key, grad in grads.items():
            total[key] = total.get(key, 0.0) + float(advantage) * grad / n
    return total


def ascent_step(params: Mapping[str, np.ndarray], gradient: Mapping[str, np.ndarray],
                entropy_gradient: Mapping[str, np.ndarray], learning_rate: float,
                entropy_coef: float) -> dict[str, np.ndarray]:
    """theta <- theta + alpha * (grad J + beta * grad H): ascent on reward plus entropy.

    The entropy bonus keeps the policy from becoming deterministic before the evidence says so.
    """
    new = {}
    for key, value in params.items():
        direction = np.zeros_like(value)
        if key in gradient:
            direction = direction + gradient[key]
        if key in entropy_gradient:
            direction = direction + entropy_coef * entropy_gradient[key]
        new[key] = value + learning_rate * direction
    return new


def importance_ratio(log_prob_now: float, log_prob_behaviour: float, cap: float = 50.0) -> float:
    """rho = pi_theta(a) / mu(a): how much more likely an old action is under today's policy."""
    return math.exp(min(log_prob_now - log_prob_behaviour, cap))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def categorical_grad_log_prob(probs: np.ndarray, index: int) -> np.ndarray:
    """d log softmax(l)_a / d l = onehot(a) - softmax(l)."""
    grad = -probs.copy()
    grad[index] += 1.0
    return grad


def categorical_grad_entropy(probs: np.ndarray) -> np.ndarray:
    """dH/dl_j = -p_j (log p_j + H) for H = -sum_j p_j log p_j."""
    log_p = np.log(np.maximum(probs, 1e-300))
    entropy = -float((probs * log_p).sum())
    return -probs * (log_p + entropy)
