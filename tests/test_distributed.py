"""Data-parallel RL on 2 CPU processes (gloo): identical weights, the 2B-batch equivalence, rank-0-only outputs.

One spawn of two worker processes does every distributed check (each spawn pays for importing
torch and transformers), with the three gradient-averaging strategies (DDP's backward hooks, one
all-reduce after the backward, FSDP's sharded parameters and reduce-scattered gradients); the
test process then compares with single-process runs. Sharded parameters are compared gathered.

Tolerances come from the arithmetic, not from one machine's results. Runs that must agree but
reduce in another order (two ranks vs one, sharded vs whole) are compared where that order is the
only difference: SFT in float64 (Adam turns a gradient error of d into an update error of up to
lr * d / eps, which fp32 rounding makes visible and float64 keeps far below the tolerance), and
RL trainers (float32 only) by the gradients of their first optimizer step, before Adam and before
sampled rollouts can diverge on one flipped token.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from deadlines import deadline_s
from rl_utils import count_env_kwargs, say_dataset, small_config, tiny_policy, tiny_tokenizer
from torch.distributed.tensor import DTensor

from agents.common import distributed as dist
from agents.common.config import build_config
from agents.common.distributed import DistributedConfig
from agents.common.logging import RunLogger
from agents.common.model import ActorCritic
from agents.pg.base import CompletionBatch
from agents.rl import load_trainer, make_trainer
from agents.sft import SFTConfig, SFTTrainer
from instruct_env.error import ConfigError

WORLD = 2
B = 4  # completions per rank in the equivalence check; the single process gets 2B
UPDATES = 3
# (algo, config overrides) whose update is a deterministic function of the batch.
EQUIVALENCE = [("reinforce", {"baseline": "batch_mean", "num_minibatches": 2}),
               ("grpo", {"group_size": 2, "update_epochs": 2, "num_minibatches": 1})]
STRATEGIES = ("ddp", "allreduce", "fsdp")
# (name, algo, overrides) of trainers that call the wrapper differently: the whole ActorCritic (PPO;
# PPO stopping early after a forward pass it does not back-propagate; A2C with accumulated
# minibatches) and the LM alone (REINFORCE with accumulated minibatches, GRPO).
RL_RUNS = [("ppo", "ppo", {}), ("ppo_early_stop", "ppo", {"target_kl": 1e-9}), ("a2c", "a2c", {"num_minibatches": 2}),
           ("reinforce", "reinforce", {"num_minibatches": 2}), ("grpo", "grpo", {})]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fixed_batch(n: int, seed: int = 123) -> CompletionBatch:
    """``n`` prompts, completions (with varied lengths) and rewards, the same for every caller."""
    g = torch.Generator().manual_seed(seed)
    P, K = 5, 3
    lengths = torch.randint(1, K + 1, (n,), generator=g)
    token_mask = (torch.arange(K)[None, :] < lengths[:, None]).long()  # (n, K)
    tokens = torch.randint(3, 16, (n, K), generator=g) * token_mask
    return CompletionBatch(context_ids=torch.randint(3, 16, (n, P), generator=g),
                           context_mask=torch.ones(n, P, dtype=torch.long), tokens=tokens, token_mask=token_mask,
                           rewards=torch.rand(n, generator=g))


def _rows(batch: CompletionBatch, rows: slice) -> CompletionBatch:
    return CompletionBatch(batch.context_ids[rows], batch.context_mask[rows], batch.tokens[rows],
                           batch.token_mask[rows], batch.rewards[rows])


def _flat(parameters) -> torch.Tensor:
    """All of ``parameters`` in one vector; FSDP shards are gathered whole (every rank must call it)."""
    return torch.cat([(p.full_tensor() if isinstance(p, DTensor) else p).detach().reshape(-1) for p in parameters])


def _first_step_gradients(trainer) -> list[torch.Tensor]:
    """Filled, at ``trainer``'s first optimizer step, with its gradients (averaged over ranks, gathered, clipped).

    Every rank steps at the same points, so the gathering collectives line up.
    """
    captured: list[torch.Tensor] = []

    def hook(optimizer, args, kwargs) -> None:
        if not captured:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            captured.append(_flat(p.grad if p.grad is not None else torch.zeros_like(p) for p in params))

    trainer.optimizer.register_step_pre_hook(hook)
    return captured


def assert_same_gradient(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to the order of float32 sums: each entry within 1e-4 of the gradient's largest entry.

    A float32 sum of L terms in another order differs by at most about L * 6e-8 times the sum of
    their magnitudes; here L < 2000 (tokens x hidden units), so 1e-4 of the scale bounds it. A real
    mismatch (a gradient not averaged, a micro-batch or a loss term missing) is of the order of the
    gradient itself.
    """
    assert actual.shape == expected.shape
    assert expected.abs().max() > 0, "the gradient is all zero: nothing was compared"
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


@contextmanager
def float64():
    """Build and train in float64 (SFT supports it): reduction-order errors drop from ~1e-7 to ~1e-16."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


# Two float64 SFT runs that differ in reduction order only. A gradient entry's rounding error is
# below 1e3 terms * 1.1e-16 * their size (< 1) = 1e-13; Adam (eps 1e-8) turns it into an update
# error of at most lr * 1e-13 / 1e-8 = 1e-7 per step. Two steps stay below 1e-6, while a real
# mismatch moves weights by about lr = 1e-2.
SFT_F64 = {"rtol": 0.0, "atol": 1e-6}


def _fixed_batch_updates(algo: str, overrides: dict, rows: slice, tokenizer,
                         strategy: str = "ddp") -> tuple[torch.Tensor, torch.Tensor]:
    """Train a fresh tiny policy for UPDATES steps on ``rows`` of the fixed batch.

    Returns its flat parameters after, and the gradients of its first optimizer step.
    """
    config = small_config(algo, num_envs=rows.stop - rows.start, kl_coef=0.0,
                          distributed=DistributedConfig(strategy), **overrides)
    trainer = make_trainer(algo, config, tiny_policy(tokenizer, seed=0), tokenizer, count_env_kwargs())
    first = _first_step_gradients(trainer)
    batch = _rows(_fixed_batch(WORLD * B), rows)
    for _ in range(UPDATES):
        trainer.score_old_and_reference(batch)
        trainer.optimize(batch, trainer.advantages(batch.rewards))
    return _flat(trainer.trainable_parameters()), first[0]


def _sft(batch_size: int, tokenizer, checkpoint_dir: Path | None = None, strategy: str = "ddp",
         grad_accum: int = 1) -> torch.Tensor:
    """Two SFT steps (constant lr, no dropout) on four samples, in float64; the flat parameters after."""
    with float64():
        return _sft_steps(batch_size, tokenizer, checkpoint_dir, strategy, grad_accum)


def _sft_steps(batch_size: int, tokenizer, checkpoint_dir: Path | None, strategy: str, grad_accum: int) -> torch.Tensor:
    lm = tiny_policy(tokenizer, seed=0).lm
    config = SFTConfig(max_steps=2, batch_size=batch_size, grad_accum=grad_accum, lr=1e-2, schedule="constant",
                       warmup_ratio=0.0, keep_best=False, patience=0, device="cpu", time_budget_s=None,
                       log_every=1, checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
                       distributed=DistributedConfig(strategy))
    words = ("yes", "no", "cat", "dog")
    SFTTrainer(lm, tokenizer, config, train_data=say_dataset(words), val_data=say_dataset(words)).train()
    return _flat(lm.parameters())


def _lora_policy(tokenizer) -> ActorCritic:
    import peft

    lm = tiny_policy(tokenizer, seed=0).lm
    return ActorCritic(lm, peft.LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False))


def _worker(rank: int, port: int, tmp: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    dist.init_distributed(timeout_s=60)
    try:
        tokenizer = tiny_tokenizer()
        out = Path(tmp) / "run"
        results: dict = {}

        # (a) + (c): a real data-parallel GRPO run that logs and checkpoints.
        with RunLogger(out, rank=dist.rank(), tensorboard=False, progress=False) as log:
            trainer = make_trainer("grpo", small_config("grpo"), tiny_policy(tokenizer, seed=rank), tokenizer,
                                   count_env_kwargs(), log_fn=lambda m: log.log(m, step=m["update"], stage="rl"))
            history = [trainer.update_step() for _ in range(UPDATES)]
        trainer.save(out / "ckpt")
        flat = _flat(trainer.policy.parameters())
        results["params"] = flat
        results["gathered_params"] = dist.all_gather(flat[None])  # (WORLD, n)
        results["reward_mean"] = [h["reward_mean"] for h in history]

        results["grpo_wrapped"] = isinstance(trainer.train_module, DistributedDataParallel)  # ddp is the default

        # (a) for every trainer and strategy: several updates of real rollouts (ranks start from different seeds).
        for strategy in STRATEGIES:
            for name, algo, overrides in RL_RUNS:
                config = small_config(algo, distributed=DistributedConfig(strategy), **overrides)
                run = make_trainer(algo, config, tiny_policy(tokenizer, seed=rank), tokenizer, count_env_kwargs())
                results[f"start/{name}/{strategy}"] = _flat(run.policy.parameters()).clone()  # after the broadcast
                first = _first_step_gradients(run)
                history = [run.update_step() for _ in range(UPDATES)]
                results[f"first_grad/{name}/{strategy}"] = first[0]
                results[f"rl/{name}/{strategy}"] = dist.all_gather(_flat(run.policy.parameters())[None])
                results[f"wrapped/{name}/{strategy}"] = isinstance(run.train_module, DistributedDataParallel)
                results[f"sharded/{name}/{strategy}"] = dist.is_sharded(run.policy)
                results[f"whole_reference/{name}/{strategy}"] = not dist.is_sharded(run.policy._reference) and not any(
                    isinstance(p, DTensor) for p in run.policy._reference.parameters())
                results[f"early_stop/{name}/{strategy}"] = [h.get("early_stop_epoch") for h in history]

        # (b): the same fixed batch, split over the ranks.
        for strategy in STRATEGIES:
            for algo, overrides in EQUIVALENCE:
                results[f"{algo}/{strategy}"] = _fixed_batch_updates(algo, overrides,
                                                                     slice(rank * B, (rank + 1) * B), tokenizer,
                                                                     strategy)
            # each rank: 1 of the 2 examples per step
            sft_dir = {"ddp": out / "sft", "fsdp": Path(tmp) / "sft_fsdp"}.get(strategy)
            results[f"sft/{strategy}"] = _sft(1, tokenizer, checkpoint_dir=sft_dir, strategy=strategy)
        for strategy in ("ddp", "fsdp"):  # DDP's no_sync / FSDP's skipped reduce-scatter on the first micro-batch
            results[f"sft_accum/{strategy}"] = _sft(1, tokenizer, grad_accum=2, strategy=strategy)

        # fsdp: a sharded GRPO run checkpoints whole tensors (rank 0 writes) and resumes from them.
        fsdp = make_trainer("grpo", small_config("grpo", distributed=DistributedConfig("fsdp")),
                            tiny_policy(tokenizer, seed=rank), tokenizer, count_env_kwargs())
        for _ in range(UPDATES):
            fsdp.update_step()
        fsdp.save(Path(tmp) / "fsdp_ckpt")
        results["fsdp_ckpt_params"] = _flat(fsdp.trainable_parameters())
        fsdp.load_state(Path(tmp) / "single")  # a single-process checkpoint loads into the sharded trainer
        results["fsdp_from_single_updates"] = fsdp.num_updates
        results["fsdp_from_single_params"] = _flat(fsdp.trainable_parameters())

        # fsdp with a PEFT adapter: the reference is the sharded LM with its adapter disabled.
        for strategy in ("ddp", "fsdp"):
            for algo in ("ppo", "grpo"):
                run = make_trainer(algo, small_config(algo, kl_coef=0.1, distributed=DistributedConfig(strategy)),
                                   _lora_policy(tokenizer), tokenizer, count_env_kwargs())
                first = _first_step_gradients(run)
                kl = run.update_step()["kl"]
                results[f"peft/{algo}/{strategy}"] = (_flat(run.trainable_parameters()), kl, first[0])

        # fsdp: inside gathered(), ranks may make different numbers of forward passes (as sampling does).
        sharded = dist.wrap_module(tiny_policy(tokenizer, seed=0).lm, "fsdp")
        with torch.no_grad(), dist.gathered(sharded):
            for _ in range(1 + 2 * rank):
                logits = sharded(input_ids=torch.arange(3, 9)[None]).logits
        results["gathered_logits"] = logits
        results["resharded"] = all(isinstance(p, DTensor) for p in sharded.parameters())

        # fsdp SFT with keep_best: a too-large step makes the validation loss worse; the start is restored.
        lm = tiny_policy(tokenizer, seed=0).lm
        config = SFTConfig(max_steps=2, batch_size=1, lr=1.0, schedule="constant", warmup_ratio=0.0, keep_best=True,
                           patience=0, eval_every=1, device="cpu", distributed=DistributedConfig("fsdp"))
        sft = SFTTrainer(lm, tokenizer, config, train_data=say_dataset(("yes", "no", "cat", "dog")),
                         val_data=say_dataset(("yes", "no"))).train()
        results["sft_keep_best"] = (sft.restored, sft.best_step, _flat(lm.parameters()))
        # ...and RL continues from the sharded SFT model (as the pipeline does): the reference is a whole copy.
        policy = ActorCritic(lm)
        policy.freeze_reference()
        results["reference_after_sft"] = _flat(policy._reference.parameters())
        results["reference_whole"] = not any(isinstance(p, DTensor) for p in policy._reference.parameters())
        rl = make_trainer("grpo", small_config("grpo", kl_coef=0.1, distributed=DistributedConfig("fsdp")), policy,
                          tokenizer, count_env_kwargs())
        results["kl_after_sft"] = [rl.update_step()["kl"] for _ in range(2)]
        # A2C (accumulated minibatches) adds a value head that the sharded LM does not hold: it stays whole and is
        # averaged separately.
        policy = ActorCritic(lm)
        policy.freeze_reference()
        a2c = make_trainer("a2c", small_config("a2c", num_minibatches=2, distributed=DistributedConfig("fsdp")), policy,
                           tokenizer, count_env_kwargs())
        head = _flat(policy.value_head.parameters()).clone()
        grad_norms = [a2c.update_step()["grad_norm"] for _ in range(2)]
        results["ac_after_sft"] = (head, _flat(policy.value_head.parameters()), _flat(a2c.trainable_parameters()),
                                    grad_norms)

        # A single-process checkpoint resumes on 2 ranks (rank 1 starts a fresh env, seeded seed + 1).
        resumed = load_trainer(Path(tmp) / "single", tiny_policy(tokenizer, seed=7 + rank), tokenizer,
                               count_env_kwargs())
        results["resumed_updates"] = resumed.num_updates
        resumed.update_step()
        results["resumed_params"] = dist.all_gather(_flat(resumed.trainable_parameters())[None])
        torch.save(results, Path(tmp) / f"rank{rank}.pt")
    finally:
        dist.destroy_distributed()


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    tokenizer = tiny_tokenizer()
    single = make_trainer("grpo", small_config("grpo"), tiny_policy(tokenizer), tokenizer, count_env_kwargs())
    single.update_step()
    single.save(tmp / "single")
    ctx = mp.start_processes(_worker, args=(_free_port(), str(tmp)), nprocs=WORLD, join=False, start_method="spawn")
    limit = deadline_s(900)  # stops a hang only: a 2-core machine needs about a minute
    deadline = time.monotonic() + limit
    while not ctx.join(timeout=1):  # raises with a worker's traceback as soon as one fails
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the 2-process run did not finish within {limit:.0f} s (a hang; see the workers' output)")
    return tmp, [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


pytestmark = pytest.mark.usefixtures("single_thread")


def test_parameters_identical_across_ranks(spawned):
    _, results = spawned
    gathered = results[0]["gathered_params"]
    assert torch.equal(gathered[0], gathered[1])  # started from different seeds: rank 0's were broadcast
    assert torch.equal(results[0]["params"], results[1]["params"])
    assert results[0]["reward_mean"] == results[1]["reward_mean"]  # logged statistics are global


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", [n for n, _, _ in RL_RUNS])
def test_every_trainer_keeps_ranks_identical_with_each_strategy(spawned, name, strategy):
    _, results = spawned
    assert results[0][f"wrapped/{name}/{strategy}"] is (strategy == "ddp")
    assert results[0][f"sharded/{name}/{strategy}"] is (strategy == "fsdp")
    assert results[0][f"whole_reference/{name}/{strategy}"]  # the frozen KL reference is never sharded
    gathered = results[0][f"rl/{name}/{strategy}"]  # (WORLD, n)
    assert torch.equal(gathered[0], gathered[1])
    assert not torch.allclose(gathered[0], results[0][f"start/{name}/{strategy}"])  # the updates moved the weights
    if name == "ppo_early_stop":  # every update stopped in its first epoch (after one step), on both ranks alike
        stops = [results[r][f"early_stop/{name}/{strategy}"] for r in range(WORLD)]
        assert stops[0] == stops[1] == [0] * UPDATES


def test_ddp_is_the_default_and_a_single_process_does_not_wrap(spawned):
    _, results = spawned
    assert results[0]["grpo_wrapped"] and results[1]["grpo_wrapped"]
    assert small_config("grpo").distributed.strategy == "ddp"
    assert SFTConfig().distributed.strategy == "ddp"
    tokenizer = tiny_tokenizer()
    policy = tiny_policy(tokenizer)
    trainer = make_trainer("ppo", small_config("ppo"), policy, tokenizer, count_env_kwargs())
    assert trainer.train_module is policy  # no process group: no wrapper
    grpo = make_trainer("grpo", small_config("grpo"), policy, tokenizer, count_env_kwargs())
    assert grpo.train_module is policy.lm
    assert grpo.update_step()["update"] == 1


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("algo,overrides", EQUIVALENCE, ids=[a for a, _ in EQUIVALENCE])
def test_two_ranks_batch_b_match_one_rank_batch_2b(spawned, algo, overrides, strategy):
    _, results = spawned
    single, single_grad = _fixed_batch_updates(algo, overrides, slice(0, WORLD * B), tiny_tokenizer())
    start = _flat(make_trainer(algo, small_config(algo, num_envs=WORLD * B, kl_coef=0.0, **overrides),
                               tiny_policy(tiny_tokenizer(), seed=0), tiny_tokenizer(),
                               count_env_kwargs()).trainable_parameters())
    assert not torch.allclose(single, start)  # the updates did move the weights
    for r in range(WORLD):
        after, grad = results[r][f"{algo}/{strategy}"]
        assert not torch.allclose(after, start)
        assert_same_gradient(grad, single_grad)  # the mean over 2B examples, from two ranks of B
    torch.testing.assert_close(results[0][f"{algo}/{strategy}"][0], results[1][f"{algo}/{strategy}"][0], rtol=0, atol=0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sft_two_ranks_batch_1_match_one_rank_batch_2(spawned, strategy):
    _, results = spawned
    single = _sft(2, tiny_tokenizer())
    assert results[0][f"sft/{strategy}"].dtype == torch.float64
    torch.testing.assert_close(results[0][f"sft/{strategy}"], results[1][f"sft/{strategy}"], rtol=0, atol=0)
    # Not bit-exact: a batch of 2 is padded to its longer example, so the matmuls reduce in another order.
    torch.testing.assert_close(results[0][f"sft/{strategy}"], single, **SFT_F64)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_sft_with_gradient_accumulation_matches_one_rank(spawned, strategy):
    _, results = spawned
    single = _sft(2, tiny_tokenizer(), grad_accum=2)
    assert not torch.allclose(single, _sft(2, tiny_tokenizer()))  # accumulation changed what a step sees
    key = f"sft_accum/{strategy}"
    torch.testing.assert_close(results[0][key], results[1][key], rtol=0, atol=0)
    torch.testing.assert_close(results[0][key], single, **SFT_F64)


def test_fsdp_sft_saves_the_whole_model_on_rank_zero(spawned):
    from transformers import AutoModelForCausalLM

    tmp, results = spawned
    # written by rank 0 alone, loads in one process (in the float64 it was trained in)
    saved = AutoModelForCausalLM.from_pretrained(tmp / "sft_fsdp", torch_dtype=torch.float64)
    torch.testing.assert_close(_flat(saved.parameters()), results[0]["sft/fsdp"], rtol=0, atol=0)


def test_fsdp_checkpoint_holds_whole_tensors_and_resumes_in_one_process(spawned):
    tmp, results = spawned
    ckpt = tmp / "fsdp_ckpt"
    assert sorted(p.name for p in ckpt.iterdir()) == ["env.pkl", "env.rank1.pkl", "trainer.pt"]
    tokenizer = tiny_tokenizer()
    trainer = load_trainer(ckpt, tiny_policy(tokenizer, seed=5), tokenizer, count_env_kwargs())
    assert trainer.num_updates == UPDATES
    assert trainer.config.distributed.strategy == "fsdp"  # ignored in one process
    torch.testing.assert_close(_flat(trainer.trainable_parameters()), results[0]["fsdp_ckpt_params"], rtol=0, atol=0)
    state = torch.load(ckpt / "trainer.pt", weights_only=False)
    exp_avg = [s["exp_avg"] for s in state["optimizer"]["state"].values()]
    assert [m.shape for m in exp_avg] == [p.shape for p in trainer.trainable_parameters()]  # gathered, not shards
    assert trainer.update_step()["update"] == UPDATES + 1


def test_single_process_checkpoint_loads_into_a_sharded_trainer(spawned):
    tmp, results = spawned
    tokenizer = tiny_tokenizer()
    single = load_trainer(tmp / "single", tiny_policy(tokenizer, seed=9), tokenizer, count_env_kwargs())
    assert results[0]["fsdp_from_single_updates"] == results[1]["fsdp_from_single_updates"] == 1
    for r in range(WORLD):
        torch.testing.assert_close(results[r]["fsdp_from_single_params"], _flat(single.trainable_parameters()),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_fsdp_with_a_peft_adapter_trains_as_ddp_does(spawned, algo):
    _, results = spawned
    (_, ddp_kl, ddp_grad), (fsdp, fsdp_kl, fsdp_grad) = results[0][f"peft/{algo}/ddp"], results[0][f"peft/{algo}/fsdp"]
    # the (randomly initialised) adapter differs from the adapter-disabled reference, in both
    assert abs(ddp_kl) > 1e-4 and abs(fsdp_kl) > 1e-4
    # The first step's gradient (policy loss + 0.1 * KL to the reference) is the same: FSDP's reference
    # is its sharded LM with the adapter disabled, as DDP's is the whole one.
    assert_same_gradient(fsdp_grad, ddp_grad)
    torch.testing.assert_close(results[1][f"peft/{algo}/fsdp"][0], fsdp, rtol=0, atol=0)


def test_rl_after_fsdp_sft_keeps_a_whole_reference(spawned):
    _, results = spawned
    start = _flat(tiny_policy(tiny_tokenizer(), seed=0).lm.parameters())
    for r in range(WORLD):
        assert results[r]["reference_whole"]
        torch.testing.assert_close(results[r]["reference_after_sft"], start, rtol=0, atol=0)  # the restored SFT model
        kl_first, kl_second = results[r]["kl_after_sft"]
        assert kl_first == 0.0 and kl_second != 0.0  # identical to the reference at first, then moved away


def test_actor_critic_after_fsdp_sft_averages_the_whole_value_head(spawned):
    _, results = spawned
    head_before, head_after, params, grad_norms = results[0]["ac_after_sft"]
    assert not torch.allclose(head_before, head_after)  # the value head (outside the sharded LM) trained
    assert all(isinstance(n, float) and math.isfinite(n) and n > 0 for n in grad_norms)
    _, _, params_1, grad_norms_1 = results[1]["ac_after_sft"]
    torch.testing.assert_close(params_1, params, rtol=0, atol=0)  # LM shards and whole head agree on both ranks
    assert grad_norms_1 == grad_norms


def test_gathered_fsdp_module_allows_unequal_forward_counts(spawned):
    _, results = spawned
    whole = tiny_policy(tiny_tokenizer(), seed=0).lm(input_ids=torch.arange(3, 9)[None]).logits
    for r in range(WORLD):  # rank 0 made one forward pass, rank 1 three, without a collective between them
        torch.testing.assert_close(results[r]["gathered_logits"], whole, rtol=1e-5, atol=1e-6)
        assert results[r]["resharded"]  # sharded again on exit


def test_fsdp_sft_keep_best_restores_the_sharded_weights(spawned):
    _, results = spawned
    start = _flat(tiny_policy(tiny_tokenizer(), seed=0).lm.parameters())
    for r in range(WORLD):
        restored, best_step, weights = results[r]["sft_keep_best"]
        assert restored and best_step == 0
        torch.testing.assert_close(weights, start, rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n, _, _ in RL_RUNS])
def test_fsdp_trains_every_trainer_as_ddp_does(spawned, name):
    # Same start (rank 0's weights), same first rollouts (seeds and generators per rank, the same gathered
    # weights): the same gradient at the first step. Later updates sample from weights that differ by
    # rounding, and one flipped token would part the runs, so they are compared for moving only.
    _, results = spawned
    assert_same_gradient(results[0][f"first_grad/{name}/fsdp"], results[0][f"first_grad/{name}/ddp"])
    torch.testing.assert_close(results[1][f"first_grad/{name}/fsdp"], results[0][f"first_grad/{name}/fsdp"],
                               rtol=0, atol=0)


def test_strategy_is_validated_and_settable_from_the_command_line():
    from agents.pipeline import PipelineConfig

    config = build_config(PipelineConfig, {}, ["rl.grpo.distributed.strategy=allreduce",
                                               "sft.distributed.strategy=allreduce"])
    assert config.rl.grpo.distributed == DistributedConfig("allreduce")
    assert config.sft.distributed.strategy == "allreduce"
    assert config.rl.ppo.distributed.strategy == "ddp"
    with pytest.raises(ConfigError, match=r"^sft.distributed: DistributedConfig.strategy must be one of 'ddp', "
                                          r"'allreduce', 'fsdp'; got 'dpp'. Did you mean 'ddp' or 'fsdp'\?$"):
        build_config(PipelineConfig, {}, ["sft.distributed.strategy=dpp"])
    # A checkpoint stores the config as a plain mapping; it converts back.
    assert small_config("grpo", distributed={"strategy": "allreduce"}).distributed.strategy == "allreduce"
    with pytest.raises(ConfigError, match="its only field is 'strategy'"):
        small_config("grpo", distributed={"stratgy": "ddp"})


def test_single_process_checkpoint_resumes_on_two_ranks(spawned):
    _, results = spawned
    assert results[0]["resumed_updates"] == results[1]["resumed_updates"] == 1
    gathered = results[0]["resumed_params"]
    assert torch.equal(gathered[0], gathered[1])


def test_only_rank_zero_writes_and_checkpoint_resumes_in_one_process(spawned):
    tmp, _ = spawned
    out = tmp / "run"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, UPDATES + 1))  # one writer, not two
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["env.pkl", "env.rank1.pkl", "trainer.pt"]
    assert sorted(p.name for p in out.iterdir()) == ["ckpt", "metrics.jsonl", "sft"]
    assert sorted(p.name for p in (tmp / "sft_fsdp").iterdir()) == sorted(p.name for p in (out / "sft").iterdir())
    tokenizer = tiny_tokenizer()
    trainer = load_trainer(out / "ckpt", tiny_policy(tokenizer, seed=5), tokenizer, count_env_kwargs())
    assert trainer.num_updates == UPDATES
    assert trainer.update_step()["update"] == UPDATES + 1


def test_nproc_relaunches_through_torch_distributed_run(monkeypatch):
    import subprocess

    from agents import cli

    calls = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    assert cli.main(["rl", "--nproc", "2", "--algo", "reinforce", "--seed", "3"]) == 0
    assert calls[0][1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "agents.cli",
                            "rl", "--algo", "reinforce", "--seed", "3"]
    assert cli.main(["rl", "--nproc", "0"]) == 2


def test_shard_is_a_lazy_disjoint_view(monkeypatch):
    from agents.common import distributed as dist
    from instruct_env.tasks import BuiltinDataset

    data = BuiltinDataset(tasks=["copy", "sort_numbers"], size_per_task=5)
    monkeypatch.setattr(dist, "world_size", lambda: 3)
    shards = []
    for r in range(3):
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        shards.append(dist.shard(data))
    assert [len(s) for s in shards] == [4, 3, 3]
    ids = [s[i].id for s in shards for i in range(len(s))]
    assert sorted(ids) == sorted(data[i].id for i in range(len(data)))  # disjoint and complete
    assert shards[1][-1].id == data[7].id
