"""Stable-Baselines3 support: a causal LM as an SB3 actor-critic policy.

:class:`LMActorCriticPolicy` plugs a Hugging Face causal LM into SB3's on-policy algorithms
without changing them::

    import gymnasium as gym
    from stable_baselines3 import PPO

    import instruct_env
    from agents.sb3 import LMActorCriticPolicy

    env = gym.make("InstructEnv/Token-v0", tasks=["copy"], max_prompt_tokens=32, max_new_tokens=8)
    model = PPO(LMActorCriticPolicy, env, n_steps=64, batch_size=64,
                policy_kwargs={"tokenizer": env.unwrapped.tokenizer})
    model.learn(10_000)

SB3 sees an ordinary ``ActorCriticPolicy`` over ``Discrete(vocab_size)`` actions with a
:class:`~stable_baselines3.common.distributions.CategoricalDistribution`; the rollout
buffer, GAE, the PPO/A2C losses and the optimiser step are SB3's own. Memory cost of the
rollout buffer with token observations: see ``docs/sb3.md``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from agents.common.model import (
    ActorCritic,
    DefaultModelConfig,
    build_default_model,
    load_model,
    position_ids_from_mask,
)
from instruct_env.error import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["LMActorCriticPolicy", "DEFAULT_SB3_MODEL", "align_right"]

#: Shape of the model built when neither ``model`` nor ``model_name_or_path`` is given
#: (``n_positions`` is raised to the observation width if that is longer).
DEFAULT_SB3_MODEL = DefaultModelConfig(n_layer=2, n_embd=64, n_head=4, n_positions=128)


@dataclass
class _ModelSpec:
    """What the policy was asked to wrap (kept to rebuild it on ``load``)."""

    model: PreTrainedModel | None
    model_name_or_path: str | None
    model_config: DefaultModelConfig | None
    tokenizer: Any
    seed: int | None
    peft_config: Any
    padded_vocab: bool = False


def align_right(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each row so its last real token sits in the last column, then drop all-padding columns.

    Token observations are ``[left-padded prompt | completion so far | padding]``, so rows
    end at different columns. Rolling each row right by its trailing padding puts every
    row's last real token in the final column (the wrapped-around padding lands on the
    left), so the next-token logits of the whole batch are ``logits[:, -1]`` and can be
    computed alone; columns that are padding in every row are then dropped. Positions of
    real tokens are unchanged because they are counted from the mask.

    Args:
        input_ids: (B, W) token ids.
        attention_mask: (B, W) 1 on real tokens, 0 on padding.

    Returns:
        ``(input_ids, attention_mask)`` of shape (B, W') with ``W' <= W``.

    >>> import torch
    >>> ids = torch.tensor([[0, 7, 8, 9, 0], [5, 6, 7, 0, 0]])
    >>> mask = (ids > 0).long()
    >>> align_right(ids, mask)[0].tolist()
    [[7, 8, 9], [5, 6, 7]]
    """
    B, W = attention_mask.shape
    cols = torch.arange(W, device=attention_mask.device)
    last = (attention_mask * cols).amax(-1)  # (B,) column of the last real token
    shift = (W - 1 - last)[:, None]  # (B, 1)
    index = (cols[None, :] - shift) % W  # (B, W): out[b, j] = in[b, j - shift[b]]
    input_ids, attention_mask = input_ids.gather(1, index), attention_mask.gather(1, index)
    used = attention_mask.any(0)
    start = int(used.long().argmax()) if bool(used.any()) else W - 1
    return input_ids[:, start:], attention_mask[:, start:]


def _accepts(model: nn.Module, name: str) -> bool:
    get_base_model = getattr(model, "get_base_model", None)  # peft wrappers
    base = get_base_model() if get_base_model is not None else model
    return name in inspect.signature(base.forward).parameters


class LMActorCriticPolicy(ActorCriticPolicy):
    """An SB3 actor-critic policy whose actor is a causal LM and whose critic shares its backbone.

    Use it unmodified as ``PPO(LMActorCriticPolicy, env, policy_kwargs={...})`` or with
    ``A2C`` on ``InstructEnv/Token-v0`` (or any env with the same Dict observation of
    ``input_ids`` / ``attention_mask`` and ``Discrete(vocab_size)`` actions).

    How an observation becomes an action: the ids and mask (SB3 may hand them over as
    floats) are cast back to integers, each row is right-aligned and common padding trimmed
    (:func:`align_right`), position ids are counted from the mask, and one forward of the
    LM gives the next-token logits at the last real position -- the action distribution, a
    :class:`~stable_baselines3.common.distributions.CategoricalDistribution` over the first
    ``action_space.n`` logits -- and, through a linear value head on the last hidden state
    (:class:`agents.common.model.ActorCritic`), the state value. The optimiser covers the
    LM and the value head.

    Args:
        observation_space: The env's Dict observation space.
        action_space: ``Discrete(vocab_size)``.
        lr_schedule: SB3's learning-rate schedule.
        model: A Hugging Face causal LM (``nn.Module``) to train. It is trained in place:
            pass ``copy.deepcopy(model)`` to keep the original.
        model_name_or_path: Load a causal LM with :func:`agents.common.model.load_model`.
        model_config: Shape of the embedded default model, used when neither of the two
            above is given (default :data:`DEFAULT_SB3_MODEL`).
        tokenizer: The env's tokenizer, used to size the default model; ``None`` means the
            built-in tokenizer (the env's default). Pass ``env.unwrapped.tokenizer`` when
            the env uses another one. With a ``model`` or ``model_name_or_path`` whose own
            tokenizer is saved in its folder, the two vocabularies must be the same.
        padded_vocab: Declare that the model's first ``action_space.n`` token ids are the env
            tokenizer's and the rest is padding of its output layer. Needed only when the
            model predicts more tokens than the action space holds and its own tokenizer
            cannot be found in its folder to prove that (see Raises).
        seed: Seed for the default model's initial weights.
        peft_config: Optional ``peft`` config (e.g. LoRA): only the adapter and the value
            head train.
        temperature: The action distribution is the softmax of ``logits / temperature``
            (sampling and the log-probabilities PPO trains on alike), as in the project's own
            PPO; ``1.0`` is the plain softmax. Greedy actions do not depend on it.
        **kwargs: Passed to :class:`~stable_baselines3.common.policies.ActorCriticPolicy`
            (``optimizer_class``, ``optimizer_kwargs``...); ``net_arch``, ``activation_fn``
            and ``ortho_init`` have no effect here.

    Raises:
        ConfigError: the spaces are not token spaces, more than one model source was
            given, the model's vocabulary is smaller than the action space, the model's
            vocabulary is larger and nothing shows that its token ids mean the env's (its own
            tokenizer, found in its folder, has the action space's size, or
            ``padded_vocab=True``), its own tokenizer differs from ``tokenizer``, or the
            default model's tokenizer or ``n_positions`` does not fit the env.
    """

    # The spaces that _check_spaces accepts (SB3 declares them as any Space).
    observation_space: spaces.Dict
    action_space: spaces.Discrete

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *,
        model: PreTrainedModel | None = None,
        model_name_or_path: str | None = None,
        model_config: DefaultModelConfig | None = None,
        tokenizer: Any = None,
        seed: int | None = None,
        peft_config: Any = None,
        temperature: float = 1.0,
        padded_vocab: bool = False,
        **kwargs: Any,
    ) -> None:
        _check_spaces(observation_space, action_space)
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"temperature must be a finite number > 0; got {temperature!r}. Use 1.0 for the plain "
                              "softmax, lower values for sharper sampling.")
        self._temperature = float(temperature)
        if model is not None and model_name_or_path is not None:
            raise ConfigError("Pass either model= (an nn.Module) or model_name_or_path= (a name or path), not both.")
        if model_config is not None and (model is not None or model_name_or_path is not None):
            raise ConfigError("model_config= shapes the default model only; it cannot be combined with model= or "
                              "model_name_or_path=.")
        # Plain attribute (not a Module): nn.Module allows it before __init__, and _build,
        # which SB3 calls from ActorCriticPolicy.__init__, needs it.
        self._spec = _ModelSpec(model, model_name_or_path, model_config, tokenizer, seed, peft_config,
                                bool(padded_vocab))
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    # --- construction -------------------------------------------------------------------

    def _make_lm(self) -> PreTrainedModel:
        spec = self._spec
        if spec.model is not None:
            return spec.model
        if spec.model_name_or_path is not None:
            return load_model(spec.model_name_or_path, kind="causal")
        from instruct_env.envs.core import resolve_tokenizer

        tokenizer = resolve_tokenizer(spec.tokenizer)
        if len(tokenizer) != self.action_space.n:
            raise ConfigError(
                f"The default model is sized from the tokenizer ({len(tokenizer)} tokens) but the action space "
                f"has {self.action_space.n} actions. Pass the env's tokenizer "
                f"(policy_kwargs={{'tokenizer': env.unwrapped.tokenizer}}) or a model."
            )
        ids_space = self.observation_space["input_ids"]
        assert ids_space.shape is not None  # a 1-D Box, checked by _check_spaces
        width = ids_space.shape[0]
        config = spec.model_config or DEFAULT_SB3_MODEL
        if spec.model_config is None and config.n_positions < width:
            config = dataclasses.replace(config, n_positions=width)
        if config.n_positions < width:
            raise ConfigError(
                f"model_config.n_positions ({config.n_positions}) is shorter than the observation width {width} "
                f"(max_prompt_tokens + max_new_tokens); raise n_positions to at least {width}."
            )
        return build_default_model(tokenizer, config, seed=spec.seed)

    def _build(self, lr_schedule: Schedule) -> None:
        """Create the LM + value head and the optimiser over their parameters."""
        self.actor_critic = ActorCritic(self._make_lm(), peft_config=self._spec.peft_config)
        head = self.actor_critic.lm.get_output_embeddings()
        vocab = head.out_features if head is not None else self.actor_critic.config.vocab_size
        if vocab < self.action_space.n:
            raise ConfigError(
                f"The model predicts {vocab} tokens but the action space has {self.action_space.n}: the model and "
                "the env's tokenizer do not match. Use the model's own tokenizer in the env (tokenizer=...)."
            )
        self._check_vocabulary(vocab)
        self._n_actions = int(self.action_space.n)
        self._logits_to_keep = _accepts(self.actor_critic.lm, "logits_to_keep")
        params = [p for p in self.actor_critic.parameters() if p.requires_grad]
        # SB3 types optimizer_class as type[Optimizer], whose own __init__ has no lr; every concrete one has.
        self.optimizer = self.optimizer_class(params, lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _check_vocabulary(self, vocab: int) -> None:
        """Refuse a model whose token ids may not mean the env's (see the class's Raises)."""
        spec, n = self._spec, int(self.action_space.n)
        if spec.model is None and spec.model_name_or_path is None:
            return  # the default model is built from the env's tokenizer
        own = _saved_tokenizer(spec.model_name_or_path or getattr(self.actor_critic.config, "_name_or_path", None))
        if own is not None and spec.tokenizer is not None:
            from instruct_env.envs.core import resolve_tokenizer

            # Every env token must have the same id for the model (the model's tokenizer may add tokens after them).
            if not resolve_tokenizer(spec.tokenizer).get_vocab().items() <= own.get_vocab().items():
                raise ConfigError(
                    "The model's own tokenizer (saved with it) is not the tokenizer given as the env's: the same token "
                    "id would mean different things to the model and the env. Make the env with the model's "
                    "tokenizer: gym.make(..., tokenizer=<the model's folder or name>)."
                )
            return
        if vocab == n or spec.padded_vocab or (own is not None and n in (len(own), own.vocab_size)):
            return
        found = (f"its own tokenizer has {len(own)} tokens" if own is not None
                 else "no tokenizer was found with it to show which tokens its ids are")
        raise ConfigError(
            f"The model predicts {vocab} tokens but the env's action space has {n}, and {found}: its token ids "
            f"may not mean the env's (e.g. a model built for another tokenizer). Make the env with the model's own "
            f"tokenizer (gym.make(..., tokenizer=...)); if the model's first {n} ids are the env tokenizer's and the "
            f"rest pads its output layer, pass policy_kwargs={{'padded_vocab': True}}."
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        spec = self._spec
        data.update(
            model=spec.model, model_name_or_path=spec.model_name_or_path, model_config=spec.model_config,
            tokenizer=spec.tokenizer, seed=spec.seed, peft_config=spec.peft_config, temperature=self._temperature,
            padded_vocab=spec.padded_vocab,
        )
        return data

    # --- the forward pass ---------------------------------------------------------------

    def _logits_and_values(self, obs: PyTorchObs) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token logits (B, n_actions) and values (B, 1) for a batch of token observations."""
        obs = _token_obs(obs)
        input_ids, attention_mask = obs["input_ids"], obs["attention_mask"]
        if input_ids.is_floating_point():  # SB3 may store observations as floats; ids are exact below 2**24
            input_ids = input_ids.round()
        input_ids, attention_mask = align_right(input_ids.long(), (attention_mask > 0.5).long())
        kwargs = {"logits_to_keep": 1} if self._logits_to_keep else {}
        out = self.actor_critic.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
            output_hidden_states=True,
            **kwargs,
        )
        logits = out.logits[:, -1, : self._n_actions].float()  # (B, V)
        hidden = out.hidden_states[-1][:, -1]  # (B, H) last real position of every row
        head = self.actor_critic.value_head
        values = head(hidden.to(head.weight.dtype))  # (B, 1)
        return logits, values

    def _distribution(self, logits: torch.Tensor) -> CategoricalDistribution:
        assert isinstance(self.action_dist, CategoricalDistribution)
        return self.action_dist.proba_distribution(action_logits=logits / self._temperature)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or pick greedily) the next token: ``(actions (B,), values (B, 1), log_prob (B,))``."""
        logits, values = self._logits_and_values(obs)
        distribution = self._distribution(logits)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, values, distribution.log_prob(actions)

    def evaluate_actions(self, obs: PyTorchObs, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(values (B, 1), log_prob (B,), entropy (B,))`` of ``actions`` under the current policy."""
        logits, values = self._logits_and_values(obs)
        distribution = self._distribution(logits)
        return values, distribution.log_prob(actions.long().reshape(-1)), distribution.entropy()

    def get_distribution(self, obs: PyTorchObs) -> Distribution:
        """The next-token distribution (used by ``predict``)."""
        return self._distribution(self._logits_and_values(obs)[0])

    def predict_values(self, obs: PyTorchObs) -> torch.Tensor:
        """State values (B, 1), used by SB3 to bootstrap the rollout's last step and truncated episodes.

        A row whose last column is a real token has used up the whole completion budget:
        the env ended the episode there (``truncated``, since a budget ran out), but nothing
        can follow it and the number of tokens written is part of the observation, so it is
        a terminal state of the MDP and its value is 0 (Pardo et al., 2018, "Time Limits in
        Reinforcement Learning"). SB3 asks for exactly these values when it bootstraps a
        truncated episode; returning 0 removes a bias of ``gamma * V(s_final)`` on the final
        reward -- a prediction on states the critic never trains on -- and a forward pass.
        """
        obs = _token_obs(obs)
        full = obs["attention_mask"][:, -1] > 0.5  # (B,) completion budget used up
        values = torch.zeros(full.shape[0], 1, device=full.device)
        if bool(full.all()):
            return values
        live = ~full
        sub = {key: value[live] for key, value in obs.items()}
        values[live] = self._logits_and_values(sub)[1].to(values.dtype)
        return values


def _saved_tokenizer(path: str | None) -> Any:
    """The tokenizer saved in the local folder ``path``, or ``None`` (no folder, no tokenizer files)."""
    import os

    if not path or not os.path.isdir(path):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        return None


def _token_obs(obs: PyTorchObs) -> dict[str, torch.Tensor]:
    """``obs`` as the dict of tensors that token observations are (``input_ids``, ``attention_mask``)."""
    if not isinstance(obs, dict):
        raise ConfigError(f"Expected a dict observation with 'input_ids' and 'attention_mask'; got {type(obs).__name__}.")
    return obs


def _is_1d_box(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and len(space.shape) == 1


def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    keys = ("input_ids", "attention_mask")
    if not (isinstance(observation_space, spaces.Dict) and all(k in observation_space.spaces for k in keys)
            and all(_is_1d_box(observation_space[k]) for k in keys)):
        raise ConfigError(
            f"LMActorCriticPolicy needs a Dict observation with 1-D 'input_ids' and 'attention_mask' boxes (as "
            f"InstructEnv/Token-v0 gives); got {observation_space}."
        )
    if not isinstance(action_space, spaces.Discrete):
        raise ConfigError(
            f"LMActorCriticPolicy emits one token per step and needs a Discrete(vocab_size) action space; got "
            f"{action_space}. For whole completions (InstructEnv/Completion-v0) use agents.pg instead."
        )
