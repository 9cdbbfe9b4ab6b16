"""pi_theta(a | s): a state-conditioned policy that picks a training segment's hyperparameters.

The search room's trajectory policy, pure NumPy. Before each segment of a member's training it
sees a state `s` (how far training is, how good the member is against the population and
whether it is improving, what the discriminator says) and chooses, for every hyperparameter
that may change mid-training, one categorical action:

* a continuous hyperparameter (a learning rate) *moves* on its unit scale (log scale for
  `sampling="log"`): down one step, stay, or up one step (`step=0.05` is a factor of 1.41 on a
  1e-5..1e-2 log range). Its head also sees where the value is now.
* a finite one (`Choice`, `Boolean`, `Int`/`Float` with a small step grid) picks its value.

Each head is a linear softmax, `logits = W s + c * onehot(keep)`, where `keep` is the action
that leaves the value as it is and `c` (learned, starting at `stickiness`) makes keeping the
current value the default: a schedule changes when the evidence says so, not at random.

With `balance=k` a moving head also sees how far its value sits above the other moving values
on their unit scales (for a GAN: the generator's learning rate against the discriminator's),
so one linear head can learn to move towards a balance, not only up or down. Its weight on
that input starts at `k` towards the others (a prior, learned from there; 0: none).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from keras_tuner.engine import hyperparameters as hp_module

from rlhf_keras.policy import _grid, _native  # the same value grids as the birth policy
from rlhf_keras.reinforce import (
    categorical_grad_entropy,
    categorical_grad_log_prob,
    softmax,
)

# What the policy sees; missing measurements (a non-GAN model has no D(x)) read as 0.
STATE_FEATURES = (
    "bias",  # 1
    "progress",  # segment index / segments, in [0, 1)
    "rank",  # the member's quality rank in the population, centred, in [-1, 1]
    "trend",  # its last improvement minus the one before (speeding up or slowing down)
    "d_gap",  # E[D(x)] - E[D(G(z))] over its last segment, in [-1, 1]
    "d_fake",  # E[D(G(z))], in [0, 1]
)
MOVES = (-1, 0, 1)
_UNIT_TOP = 1.0 - 1e-9


class _Head:
    """One hyperparameter's linear softmax: weights (actions x inputs) and stickiness c."""

    def __init__(self, hp: hp_module.HyperParameter, n_inputs: int, stickiness: float):
        self.hp = hp
        self.grid = _grid(hp, max_grid=64)
        n_actions = len(self.grid) if self.grid is not None else len(MOVES)
        self.weights = np.zeros((n_actions, n_inputs))
        self.stickiness = float(stickiness)

    @property
    def moves(self) -> bool:
        return self.grid is None

    def inputs(self, state: np.ndarray, value: Any) -> np.ndarray:
        """The state, plus the value's centred position on its unit scale for moving heads."""
        position = 0.0
        if self.moves:
            position = 2.0 * float(self.hp.value_to_prob(value)) - 1.0
        return np.append(state, position)

    def keep_index(self, value: Any) -> int:
        if self.moves:
            return MOVES.index(0)
        return self.grid.index(value) if value in self.grid else -1

    def probabilities(self, state: np.ndarray, value: Any) -> np.ndarray:
        logits = self.weights @ self.inputs(state, value)
        keep = self.keep_index(value)
        if keep >= 0:
            logits[keep] += self.stickiness
        return softmax(logits)

    def apply(self, index: int, value: Any, step: float) -> Any:
        """The hyperparameter's new value after action `index`."""
        if not self.moves:
            return self.grid[index]
        unit = float(self.hp.value_to_prob(value)) + MOVES[index] * step
        return _native(self.hp.prob_to_value(min(max(unit, 0.0), _UNIT_TOP)))

    def get_state(self) -> dict[str, Any]:
        return {"hp": hp_module.serialize(self.hp), "weights": self.weights.tolist(),
                "stickiness": self.stickiness}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> _Head:
        weights = np.asarray(state["weights"], dtype=np.float64)
        head = cls(hp_module.deserialize(copy.deepcopy(state["hp"])), weights.shape[1],
                   state["stickiness"])
        head.weights = weights
        return head


def check_step(step: Any) -> None:
    """Raises ValueError unless `step` (one move on the unit scale) is a number in (0, 0.5]."""
    if isinstance(step, bool) or not (isinstance(step, (int, float)) and 0 < step <= 0.5):
        raise ValueError(f"step must be a number in (0, 0.5] (unit scale; 0.1 moves a "
                         f"learning rate x2 on 1e-5..1e-2, 0.05 x1.41), got {step!r}.")


def check_balance(balance: Any) -> None:
    """Raises ValueError unless `balance` is None (off) or a finite number >= 0."""
    if balance is not None and (isinstance(balance, bool) or not isinstance(balance, (int, float))
                                or not math.isfinite(balance) or balance < 0):
        raise ValueError(f"balance must be None (off) or a number >= 0 (the initial pull "
                         f"of a learning rate towards the others; 0: learned from nothing), "
                         f"got {balance!r}.")


class SchedulePolicy:
    """pi_theta(a | s) over the mid-training hyperparameters of a search space.

    Args:
        step: How far one move shifts a continuous hyperparameter on its unit scale.
        stickiness: Initial logit bonus of keeping the current value (learned).
        balance: None, or each moving head also sees its value minus the other moving
            values', with this initial weight towards them (module docstring).
    """

    def __init__(self, step: float = 0.05, stickiness: float = 1.0,
                 balance: float | None = None) -> None:
        check_step(step)
        if not (isinstance(stickiness, (int, float)) and math.isfinite(stickiness)):
            raise ValueError(f"stickiness must be a finite number, got {stickiness!r}.")
        check_balance(balance)
        self.step = float(step)
        self.initial_stickiness = float(stickiness)
        self.balance = None if balance is None else float(balance)
        self.heads: dict[str, _Head] = {}
        self.updates = 0

    def ensure(self, hp: hp_module.HyperParameter) -> None:
        if hp.name not in self.heads:
            seen = self.balance is not None
            head = _Head(hp, len(STATE_FEATURES) + int(seen) + 1, self.initial_stickiness)
            if seen and head.moves:  # the prior: down when above the others, up when below
                column = len(STATE_FEATURES)
                head.weights[MOVES.index(-1), column] = self.balance
                head.weights[MOVES.index(1), column] = -self.balance
            self.heads[hp.name] = head

    def _probabilities(self, name: str, state: np.ndarray,
                       values: Mapping[str, Any]) -> np.ndarray:
        return self.heads[name].probabilities(self._head_state(name, state, values), values[name])

    def _head_state(self, name: str, state: np.ndarray, values: Mapping[str, Any]) -> np.ndarray:
        """`state`, and with `balance` the head's position minus the mean of the other moving
        heads' (0 for a choice or a lone moving value)."""
        if self.balance is None:
            return state
        head = self.heads[name]
        others = [h.hp.value_to_prob(values[n]) for n, h in self.heads.items()
                  if n != name and h.moves and n in values]
        gap = 0.0
        if head.moves and others:
            gap = float(head.hp.value_to_prob(values[name])) - float(np.mean(others))
        return np.append(state, gap)

    # ---------------------------------------------------------------- acting
    def sample(self, state: np.ndarray, values: Mapping[str, Any], names: Sequence[str],
               rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, int]]:
        """Draws a ~ pi(. | s) for the hyperparameters `names`, starting from `values`.

        Returns:
            `(new_values, action)`: `values` with the chosen changes, and `{name: index}`.
        """
        new_values = dict(values)
        action: dict[str, int] = {}
        for name in names:
            head = self.heads[name]
            probs = self._probabilities(name, state, values)
            index = int(rng.choice(len(probs), p=probs))
            action[name] = index
            new_values[name] = head.apply(index, values[name], self.step)
        return new_values, action

    def log_prob(self, state: np.ndarray, values: Mapping[str, Any],
                 action: Mapping[str, int]) -> float:
        """log pi(a | s) = sum over heads of log softmax(logits)[a]."""
        return float(sum(math.log(max(self._probabilities(n, state, values)[i], 1e-300))
                         for n, i in action.items()))

    # ---------------------------------------------------------------- gradients
    def _head_grads(self, name: str, state: np.ndarray, values: Mapping[str, Any],
                    dlogits_of: Any) -> dict[str, np.ndarray]:
        """Chains d(.)/d logits = `dlogits_of(probs)` back to the head's W and c
        (logits = W x + c * onehot(keep), so dW = outer(dlogits, x) and dc = dlogits[keep])."""
        head = self.heads[name]
        value = values[name]
        head_state = self._head_state(name, state, values)
        dlogits = dlogits_of(head.probabilities(head_state, value))
        keep = head.keep_index(value)
        return {f"{name}/W": np.outer(dlogits, head.inputs(head_state, value)),
                f"{name}/c": np.array(dlogits[keep] if keep >= 0 else 0.0)}

    def grad_log_prob(self, state: np.ndarray, values: Mapping[str, Any],
                      action: Mapping[str, int]) -> dict[str, np.ndarray]:
        """grad_theta log pi(a | s) per parameter block (`"<name>/W"`, `"<name>/c"`)."""
        grads: dict[str, np.ndarray] = {}
        for name, index in action.items():
            grads.update(self._head_grads(
                name, state, values, lambda probs, i=index: categorical_grad_log_prob(probs, i)))
        return grads

    def grad_entropy(self, state: np.ndarray, values: Mapping[str, Any],
                     names: Sequence[str]) -> dict[str, np.ndarray]:
        """grad_theta H(pi(. | s)) per parameter block."""
        grads: dict[str, np.ndarray] = {}
        for name in names:
            grads.update(self._head_grads(name, state, values, categorical_grad_entropy))
        return grads

    def parameters(self) -> dict[str, np.ndarray]:
        params = {}
        for name, head in self.heads.items():
            params[f"{name}/W"] = head.weights
            params[f"{name}/c"] = np.array(head.stickiness)
        return params

    def set_parameters(self, params: Mapping[str, np.ndarray]) -> None:
        for name, head in self.heads.items():
            head.weights = np.asarray(params[f"{name}/W"], dtype=np.float64)
            head.stickiness = float(params[f"{name}/c"])

    # ---------------------------------------------------------------- reading
    def summary(self, state: np.ndarray, values: Mapping[str, Any]) -> dict[str, dict[str, float]]:
        """Per head, the action probabilities in state `s` from `values`, named."""
        out = {}
        for name, head in self.heads.items():
            if name not in values:
                continue
            probs = self._probabilities(name, state, values)
            labels = ([{-1: "down", 0: "keep", 1: "up"}[m] for m in MOVES] if head.moves
                      else [str(v) for v in head.grid])
            out[name] = {label: float(p) for label, p in zip(labels, probs, strict=True)}
        return out

    def get_state(self) -> dict[str, Any]:
        return {"step": self.step, "stickiness": self.initial_stickiness, "updates": self.updates,
                "balance": self.balance,
                "heads": {name: head.get_state() for name, head in self.heads.items()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SchedulePolicy:
        policy = cls(step=state["step"], stickiness=state["stickiness"],
                     balance=state.get("balance"))  # older state files: no balance
        policy.updates = int(state["updates"])
        policy.heads = {name: _Head.from_state(h) for name, h in state["heads"].items()}
        return policy
