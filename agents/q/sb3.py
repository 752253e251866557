"""Stable-Baselines3's own DQN training a causal LM on ``InstructEnv/Token-v0``: :class:`LMQPolicy`.

::

    import gymnasium as gym
    from stable_baselines3 import DQN

    import instruct_env
    from agents.q.sb3 import LMQPolicy

    env = gym.make("InstructEnv/Token-v0", tasks=["copy"], max_prompt_tokens=32, max_new_tokens=8)
    model = DQN(LMQPolicy, env, buffer_size=20_000, learning_starts=500,
                policy_kwargs={"tokenizer": env.unwrapped.tokenizer})
    model.learn(20_000)

The Q-network is the LM: ``Q(s, a)`` is the next-token logit of token ``a`` at the last real
position of ``s`` (the soft-Q reading of an LM's logits; Guo et al., 2022), so greedy decoding
*is* the greedy Q policy. SB3's replay buffer, epsilon-greedy exploration, TD loss, target
network (a second copy of the LM, Polyak-averaged by SB3) and optimiser are used unchanged.

Replay-buffer memory: the observation is a ``Dict`` of two ``int64`` boxes of width
``W = max_prompt_tokens + max_new_tokens``; SB3's ``DictReplayBuffer`` keeps both the
observation and the next observation of every transition (its ``optimize_memory_usage`` is
not available for ``Dict`` observations), i.e. ``buffer_size * 2 * 2 * W * 8`` bytes: 5.1 GB
for SB3's default ``buffer_size=1_000_000`` at ``W = 160``, 51 MB at ``buffer_size=10_000``.
Set ``buffer_size`` to what fits (see ``docs/q_learning.md``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.dqn.policies import DQNPolicy

from agents.common.model import DefaultModelConfig, position_ids_from_mask
from agents.sb3 import LMActorCriticPolicy, _accepts, _check_spaces, _ModelSpec, _token_obs, align_right
from instruct_env.error import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["LMQPolicy", "LMQNetwork"]


class LMQNetwork(BasePolicy):
    """Q-values of every token: the LM's next-token logits at the last real position of each observation.

    An observation whose last column is a real token has used up the completion budget: the
    episode is over there, nothing can follow, so its Q-values are 0 (SB3 bootstraps a
    truncated episode from them; see ``LMActorCriticPolicy.predict_values`` for the argument).
    """

    action_space: spaces.Discrete

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, lm: PreTrainedModel) -> None:
        super().__init__(observation_space, action_space)
        self.lm = lm
        self._n_actions = int(action_space.n)
        self._logits_to_keep = _accepts(lm, "logits_to_keep")

    def forward(self, obs: PyTorchObs) -> torch.Tensor:
        """``(B, n_actions)`` Q-values."""
        obs = _token_obs(obs)
        input_ids, attention_mask = obs["input_ids"], obs["attention_mask"]
        if input_ids.is_floating_point():  # ids are exact in float32 below 2**24
            input_ids = input_ids.round()
        full = attention_mask[:, -1] > 0.5  # (B,) completion budget used up: terminal
        input_ids, attention_mask = align_right(input_ids.long(), (attention_mask > 0.5).long())
        kwargs = {"logits_to_keep": 1} if self._logits_to_keep else {}
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask,
                      position_ids=position_ids_from_mask(attention_mask), use_cache=False, **kwargs)
        q = out.logits[:, -1, : self._n_actions].float()  # (B, n_actions)
        return torch.where(full[:, None], torch.zeros_like(q), q)

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> torch.Tensor:
        return self(observation).argmax(dim=1).reshape(-1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(lm=self.lm)
        return data


class LMQPolicy(DQNPolicy):
    """An SB3 DQN policy whose Q-network is a causal LM (``DQN(LMQPolicy, env, policy_kwargs={...})``).

    Args:
        observation_space: The env's Dict observation space (``input_ids``, ``attention_mask``).
        action_space: ``Discrete(vocab_size)``.
        lr_schedule: SB3's learning-rate schedule.
        model, model_name_or_path, model_config, tokenizer, seed: Which LM, as for
            :class:`agents.sb3.LMActorCriticPolicy` (``model`` is trained in place; the target
            network is a deep copy).
        **kwargs: ``optimizer_class``, ``optimizer_kwargs``; ``net_arch``, ``activation_fn`` and
            the features extractor have no effect.

    Raises:
        ConfigError: not token spaces, two model sources, or a model that does not fit the env.
    """

    # SB3 declares them as its MLP QNetwork; these are the LM networks make_q_net returns.
    q_net: LMQNetwork  # type: ignore[assignment]
    q_net_target: LMQNetwork  # type: ignore[assignment]
    action_space: spaces.Discrete  # checked by _check_spaces

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule, *,
                 model: PreTrainedModel | None = None, model_name_or_path: str | None = None,
                 model_config: DefaultModelConfig | None = None, tokenizer: Any = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        _check_spaces(observation_space, action_space)
        if model is not None and model_name_or_path is not None:
            raise ConfigError("Pass either model= (an nn.Module) or model_name_or_path= (a name or path), not both.")
        if model_config is not None and (model is not None or model_name_or_path is not None):
            raise ConfigError("model_config= shapes the default model only; it cannot be combined with model= or "
                              "model_name_or_path=.")
        self._spec = _ModelSpec(model, model_name_or_path, model_config, tokenizer, seed, None)
        for unused in ("net_arch", "activation_fn", "features_extractor_class", "features_extractor_kwargs"):
            kwargs.pop(unused, None)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def make_q_net(self) -> LMQNetwork:  # type: ignore[override]  # an LM network, not SB3's MLP QNetwork
        """The online network on the first call (the LM), a deep copy of it on the second (the target)."""
        if getattr(self, "q_net", None) is None:
            # The model-building rules (sources, vocabulary and width checks) are LMActorCriticPolicy's.
            lm = LMActorCriticPolicy._make_lm(self)  # type: ignore[arg-type]
            head = lm.get_output_embeddings()
            vocab = head.out_features if head is not None else lm.config.vocab_size
            if vocab < self.action_space.n:
                raise ConfigError(f"The model predicts {vocab} tokens but the action space has {self.action_space.n}: "
                                  "use the model's own tokenizer in the env (tokenizer=...).")
        else:
            lm = copy.deepcopy(self.q_net.lm)
        return LMQNetwork(self.observation_space, self.action_space, lm).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for unused in ("net_arch", "activation_fn", "features_extractor_class", "features_extractor_kwargs"):
            data.pop(unused, None)
        spec = self._spec
        data.update(model=spec.model, model_name_or_path=spec.model_name_or_path, model_config=spec.model_config,
                    tokenizer=spec.tokenizer, seed=spec.seed)
        return data
