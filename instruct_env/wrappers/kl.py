"""``KLPenalty``: a per-token KL penalty to a reference model, added to the Token env's reward.

torch is imported when the wrapper is created, not when :mod:`instruct_env.wrappers` is.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from instruct_env.envs.token_env import TokenEnv
from instruct_env.error import ConfigError

__all__ = ["KLPenalty"]


class KLPenalty(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Add ``-beta * (log pi(a|s) - log pi_ref(a|s))`` to the reward of every token ``a``.

    The per-token KL penalty of Ziegler et al. (2019) and InstructGPT: ``log pi - log pi_ref``
    is the unbiased single-sample estimate of ``KL(pi || pi_ref)`` at that state (the "k1"
    estimator of :mod:`agents.common.kl`), so the penalties of an episode sum to an estimate
    of the sequence-level KL and keep the policy near the reference (e.g. the SFT model).

    Where the two log-probabilities come from:

    - ``log pi_ref(a|s)``: one forward pass of ``ref_model`` over the prompt and the
      completion so far (the observation before the action), under ``torch.no_grad()``.
    - ``log pi(a|s)``: the agent knows it (it sampled ``a``) and hands it over with
      :meth:`set_policy_logprob` before each ``step``; or pass ``policy_model`` -- the live
      model the agent samples from -- and the wrapper computes it the same way as the
      reference. The second suits agents that cannot be changed, e.g. SB3 with
      :class:`agents.sb3.LMActorCriticPolicy` given the same model.

    ``info`` gains ``policy_logprob``, ``ref_logprob``, ``kl`` (their difference) and
    ``kl_penalty`` (what was added to the reward) on every step, and ``episode_kl`` (the
    sum of ``kl``) when the episode ends. ``beta`` is a plain attribute: an adaptive
    controller (:class:`agents.common.kl.KLController`) may set it between rollouts.

    The models are used as they are (their train/eval mode is not changed: pass them in
    eval mode so dropout does not add noise). Each step runs a full forward over at most
    ``max_prompt_tokens + max_new_tokens`` tokens per model, without a KV cache, which is
    simple and exact but costs O(length) per token; agents that already batch forward
    passes should compute the KL themselves (:mod:`agents.common.kl`).

    Args:
        env: A single ``InstructEnv/Token-v0`` env (possibly wrapped).
        ref_model: The frozen reference: a causal LM called as ``model(input_ids=...)``
            whose output has ``.logits``, over the env's tokenizer vocabulary.
        beta: KL coefficient, >= 0.
        policy_model: Optional live policy model; when given, :meth:`set_policy_logprob`
            is not needed.

    Raises:
        ConfigError: not a Token env, a bad ``beta``, or a model whose vocabulary is smaller
            than the env's.

    >>> import gymnasium as gym
    >>> import instruct_env
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> env = gym.make("InstructEnv/Token-v0", tasks=["copy"], max_new_tokens=4)
    >>> config = GPT2Config(vocab_size=512, n_embd=16, n_layer=1, n_head=1, bos_token_id=1, eos_token_id=1)
    >>> ref = GPT2LMHeadModel(config).eval()
    >>> env = KLPenalty(env, ref, beta=0.1)
    >>> obs, info = env.reset(seed=0)
    >>> env.set_policy_logprob(-2.0)   # log pi(a|s) of the token the agent is about to send
    >>> obs, reward, terminated, truncated, info = env.step(7)
    >>> round(info["kl"], 6) == round(-2.0 - info["ref_logprob"], 6), reward == info["kl_penalty"]
    (True, True)
    """

    def __init__(self, env: gym.Env, ref_model: Any, *, beta: float = 0.05, policy_model: Any = None) -> None:
        # The models are recorded by reference (no deep copy), so env.spec can re-create the wrapper.
        gym.utils.RecordConstructorArgs.__init__(self, ref_model=ref_model, beta=beta, policy_model=policy_model,
                                                 _disable_deepcopy=True)
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, TokenEnv):
            raise ConfigError(
                f"KLPenalty adds a per-token penalty and needs InstructEnv/Token-v0 (one env); got "
                f"{type(base).__name__}. For whole completions, put the KL in the agent's loss or reward "
                "(agents.common.kl)."
            )
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ConfigError(f"beta must be a finite number >= 0; got {beta!r}.")
        self.beta = float(beta)
        self.ref_model = ref_model
        self.policy_model = policy_model
        vocab = base.setup.vocab_size
        for name, model in (("ref_model", ref_model), ("policy_model", policy_model)):
            size = getattr(getattr(model, "config", None), "vocab_size", None)
            if size is not None and size < vocab:
                raise ConfigError(
                    f"{name} predicts {size} tokens but the env's vocabulary has {vocab}: use the model's "
                    "tokenizer in the env (tokenizer=...)."
                )
        self._pending: float | None = None
        self._ids = np.zeros(0, dtype=np.int64)
        self._episode_kl = 0.0

    def set_policy_logprob(self, logprob: float) -> None:
        """Give ``log pi(a|s)`` of the action passed to the next :meth:`step` (used once).

        Reach it through outer wrappers with ``env.get_wrapper_attr("set_policy_logprob")``.
        """
        value = float(logprob)
        if not (math.isfinite(value) and value <= 1e-6):
            raise ConfigError(f"A log-probability must be finite and <= 0; got {logprob!r}.")
        self._pending = value

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the env and the episode's KL sum."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._remember(obs)
        self._pending, self._episode_kl = None, 0.0
        return obs, info

    def step(self, action: Any):
        """Step the env and subtract ``beta * (log pi - log pi_ref)`` of ``action`` from the reward."""
        if self._pending is None and self.policy_model is None:
            raise ConfigError(
                "KLPenalty needs log pi(a|s) of every token: call set_policy_logprob(logp) before each step(), "
                "or create the wrapper with policy_model=<the model the agent samples from>."
            )
        ids = self._ids
        obs, reward, terminated, truncated, info = self.env.step(action)
        token = int(np.asarray(action).reshape(()))
        ref_logp = self._logprob(self.ref_model, ids, token)
        policy_logp = self._pending if self._pending is not None else self._logprob(self.policy_model, ids, token)
        self._pending = None
        kl = policy_logp - ref_logp
        penalty = -self.beta * kl
        self._episode_kl += kl
        info.update(policy_logprob=policy_logp, ref_logprob=ref_logp, kl=kl, kl_penalty=penalty)
        if terminated or truncated:
            info["episode_kl"] = self._episode_kl
        self._remember(obs)
        return obs, float(reward) + penalty, terminated, truncated, info

    def _remember(self, obs: dict[str, np.ndarray]) -> None:
        self._ids = np.asarray(obs["input_ids"][obs["attention_mask"] > 0], dtype=np.int64)  # (n,) no padding

    @staticmethod
    def _logprob(model: Any, ids: np.ndarray, token: int) -> float:
        """``log p(token | ids)`` under ``model`` (one forward of the unpadded sequence)."""
        import torch

        device = next(model.parameters()).device
        with torch.no_grad():
            out = model(input_ids=torch.as_tensor(ids, device=device)[None], use_cache=False)
            logp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # (V,)
        return float(logp[token])
