"""A researcher's own data, models and runs: chat templates, cut text actions, the reward chosen for a
file's language, tokenizer checks, errors that point the right way, and ties of the best checkpoint."""

from __future__ import annotations

import copy
import json
import logging

import gymnasium as gym
import pytest
import torch
from test_cli import TINY

import instruct_env  # noqa: F401  (registers the envs)
from agents.cli import main
from agents.common.evaluation import HeldOutTracker

#: A chat template in Jinja, as Hugging Face tokenizers carry it.
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def chat_tokenizer():
    from instruct_env.tokenizer import builtin_tokenizer

    tok = copy.deepcopy(builtin_tokenizer())
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _prompt_ids(obs: dict) -> list[int]:
    return [int(i) for i, m in zip(obs["input_ids"], obs["attention_mask"]) if m]


# -- item 4: chat templates -------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["InstructEnv/Completion-v0", "InstructEnv/Token-v0"])
@pytest.mark.parametrize("use_chat_template", [True, "auto"])
def test_chat_template_is_used_and_info_prompt_matches_the_observation(chat_tokenizer, env_id, use_chat_template):
    env = gym.make(env_id, tasks=["copy"], tokenizer=chat_tokenizer, use_chat_template=use_chat_template)
    obs, info = env.reset(seed=0)
    assert info["prompt"].startswith("<user>") and info["prompt"].endswith("<assistant>")
    assert chat_tokenizer.decode(_prompt_ids(obs)) == info["prompt"]


def test_pipeline_trains_and_evaluates_with_a_chat_template(chat_tokenizer, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model_dir = tmp_path / "chat_model"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(chat_tokenizer), n_layer=1, n_embd=32, n_head=2,
                               n_positions=128)).save_pretrained(model_dir)
    chat_tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    sets = [a for o in TINY + ["data.use_chat_template=true"] for a in ("--set", o)]
    assert main(["pipeline", "--model", str(model_dir), "--out", str(out), *sets]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["stage"] == "rl" and r["kind"] == "train"] == [1, 2]
    assert list(json.loads((out / "results.json").read_text())) == ["zero-shot", "SFT", "SFT+RL"]


# -- item 6: ties keep the latest weights, and the console says when RL's result is its start -------


def test_tracker_tie_keeps_the_later_weights():
    model = torch.nn.Linear(2, 1)
    tracker = HeldOutTracker("task")
    with torch.no_grad():
        model.weight.fill_(1.0)
    tracker.update(0, heldout=0.0, model=model)
    with torch.no_grad():
        model.weight.fill_(2.0)
    tracker.update(40, heldout=0.0, train_reward=0.1, model=model)
    assert tracker.best_step == 40
    with torch.no_grad():
        model.weight.fill_(3.0)
    assert tracker.restore_best(model) and float(model.weight[0, 0].detach()) == 2.0


def test_rl_says_when_the_final_model_is_the_starting_one_and_which_rule_ended_it(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("INSTRUCT_ENV_CACHE", str(tmp_path / "cache"))
    update = HeldOutTracker.update

    def start_is_best(self, step, heldout, train_reward=None, model=None):  # every RL check scores below the start
        update(self, step, 1.0 if step == 0 else 0.0, train_reward, model)

    monkeypatch.setattr(HeldOutTracker, "update", start_is_best)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):  # also: --updates fixes RL's length (item 10), and the report says so
        assert main(["rl", "--updates", "1", "--out", str(out), *[a for o in TINY for a in ("--set", o)]]) == 0
    assert "The final model is the STARTING model, unchanged by RL" in caplog.text
    report = (out / "report.md").read_text()
    assert "The final model is the STARTING model" in report
    assert "1 updates (the update count rl.grpo.total_updates=1)" in report
    config = (out / "config.yaml").read_text()
    assert "total_updates: 1\n" in config and "time_budget_s: null" in config


# -- item 5: text actions that do not fit are flagged, budgets per language are documented ----------


def test_a_cut_text_action_is_flagged_in_info(tokenizer):
    env = gym.make("InstructEnv/Completion-v0", tasks=["copy"], max_new_tokens=4)
    env.reset(seed=0)
    text = "one two three four five six"
    n = len(tokenizer.encode(text, add_special_tokens=False))
    _, _, terminated, truncated, info = env.step(text)
    assert info["text_cut"] and info["cut_tokens"] == n - 4 and info["completion_tokens"] == 4
    assert info["length_limited"] and terminated and not truncated
    env.reset(seed=0)
    _, _, _, _, info = env.step("one")
    assert not info["text_cut"] and info["cut_tokens"] == 0
    venv = gym.make_vec("InstructEnv/Completion-v0", num_envs=2, vectorization_mode="vector_entry_point",
                        tasks=["copy"], max_new_tokens=4)
    venv.reset(seed=0)
    _, _, _, _, infos = venv.step([text, "one"])
    assert infos["final_info"]["text_cut"].tolist() == [True, False]
    assert infos["final_info"]["cut_tokens"].tolist() == [n - 4, 0]


def test_documented_tokens_per_character_of_the_builtin_tokenizer(tokenizer):
    from instruct_env.tasks import example_file, load_file

    counts: dict[str, list[int]] = {}
    for name in ("mini", "multilingual"):
        for s in load_file(example_file(name)):
            language = s.metadata.get("record", {}).get("language", "en")
            for text in (s.instruction, s.context, *s.references):
                c = counts.setdefault(language, [0, 0, 0])
                c[0] += len(tokenizer.encode(text, add_special_tokens=False))
                c[1] += len(text.replace(" ", ""))
                c[2] += len(text.split())
    per_char = {lang: round(t / chars, 1) for lang, (t, chars, _) in counts.items()}
    assert per_char == {"en": 0.7, "zh": 2.7, "ja": 2.8, "ar": 2.0}  # the README's numbers
    assert round(counts["en"][0] / counts["en"][2], 1) == 3.1


def test_grpo_logs_the_share_of_answers_that_used_the_budget(tokenizer):
    from agents.common.model import ActorCritic, DefaultModelConfig, build_default_model
    from agents.pg.config import GRPOConfig
    from agents.rl import make_trainer

    torch.manual_seed(0)
    lm = build_default_model(tokenizer, DefaultModelConfig(n_layer=1, n_embd=32, n_head=2, n_positions=64))
    config = GRPOConfig(num_envs=4, group_size=2, max_new_tokens=3, total_updates=1, time_budget_s=None,
                        eval_every=0, device="cpu")
    trainer = make_trainer("grpo", config, ActorCritic(lm), tokenizer, {"tasks": ["copy"], "max_prompt_tokens": 48})
    history = trainer.train()
    # An untrained model rarely says EOS within 3 tokens: the share is a multiple of 1/4 in [0, 1].
    frac = history[-1]["length_limited_frac"]
    assert 0.0 <= frac <= 1.0 and (frac * 4).is_integer()


# -- item 7: reward="auto" on a file suits the references' script and says what it chose ------------


def test_auto_reward_scores_exact_answers_in_every_script_and_says_which(caplog):
    from instruct_env.tasks import example_file, load_file

    samples = load_file(example_file("multilingual"))
    with caplog.at_level(logging.INFO, logger="instruct_env.envs.core"):
        env = gym.make("InstructEnv/Completion-v0", dataset=samples, max_new_tokens=256)
    assert "reward='auto' chose {'rougeL': {'tokenizer': 'cjk'}}" in caplog.text
    assert env.unwrapped.setup.reward_note.startswith("reward='auto' chose")
    for index in (0, 6, 12):  # Chinese, Japanese, Arabic
        _, info = env.reset(options={"index": index})
        _, reward, _, _, _ = env.step(info["references"][0])
        assert reward == 1.0, samples[index].metadata["record"]["language"]
    english = gym.make("InstructEnv/Completion-v0", dataset=load_file(example_file("mini")))
    assert english.unwrapped.setup.reward_note.startswith("reward='auto' chose 'rougeL'")


# -- item 8: SB3 refuses a model whose token ids may not be the env's --------------------------------


def _qwen2(vocab_size: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                        max_position_embeddings=64))


def test_sb3_refuses_a_larger_vocabulary_that_is_not_the_envs(tokenizer, tmp_path):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    from agents.sb3 import LMActorCriticPolicy
    from instruct_env.error import ConfigError

    env = gym.make("InstructEnv/Token-v0", tasks=["copy"], max_prompt_tokens=24, max_new_tokens=2)
    n = env.action_space.n
    assert n == len(tokenizer) < 600
    with pytest.raises(ConfigError, match=f"predicts 600 tokens but the env's action space has {n}.*padded_vocab"):
        PPO(LMActorCriticPolicy, env, n_steps=8, batch_size=8, policy_kwargs={"model": _qwen2(600)})
    # Declared padding, or the model's own tokenizer saved with it, shows the ids are the env's.
    PPO(LMActorCriticPolicy, env, n_steps=8, batch_size=8, policy_kwargs={"model": _qwen2(600), "padded_vocab": True})
    folder = tmp_path / "qwen"
    _qwen2(600).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    PPO(LMActorCriticPolicy, env, n_steps=8, batch_size=8, policy_kwargs={"model_name_or_path": str(folder)})
    # A model whose saved tokenizer is another one (same size, other ids) is refused.
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = {f"w{i}": i for i in range(n)}
    other = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(words, unk_token="w0")), eos_token="w1")
    other_folder = tmp_path / "other"
    _qwen2(600).save_pretrained(other_folder)
    other.save_pretrained(other_folder)
    with pytest.raises(ConfigError, match="not the tokenizer given as the env's"):
        PPO(LMActorCriticPolicy, env, n_steps=8, batch_size=8,
            policy_kwargs={"model_name_or_path": str(other_folder), "tokenizer": tokenizer})


# -- item 9: errors that point the right way -------------------------------------------------------


def test_env_errors_name_the_env_arguments(tmp_path):
    from instruct_env.error import ConfigError, DataFormatError, UnknownNameError

    with pytest.raises(UnknownNameError, match=r"Completion-v0 \(vector env\) takes no argument 'max_new_token'\. "
                                               r"Did you mean 'max_new_tokens'.*Accepted arguments: .*group_size"):
        gym.make_vec("InstructEnv/Completion-v0", num_envs=2, vectorization_mode="vector_entry_point",
                     max_new_token=8)
    with pytest.raises(UnknownNameError, match="takes no argument 'autoreset_mode'.*always resets in the same step"):
        gym.make_vec("InstructEnv/Completion-v0", num_envs=2, vectorization_mode="vector_entry_point",
                     autoreset_mode="NextStep")
    with pytest.raises(UnknownNameError, match=r"Token-v0 takes no argument 'autoreset_mode'.* of the vector env \(gym"):
        gym.make("InstructEnv/Token-v0", autoreset_mode="NextStep")  # the hint is the Token env's, not Completion's
    with pytest.raises(UnknownNameError, match="InstructEnv/Token-v0 takes no argument 'taskss'. Did you mean 'tasks'"):
        gym.make("InstructEnv/Token-v0", taskss=["copy"])
    # A file whose columns cannot be guessed: the env has no fields= argument, so the message says what to pass.
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"question": "2+2?", "answer": "4"}) + "\n")
    with pytest.raises(DataFormatError) as info:
        gym.make("InstructEnv/Completion-v0", dataset=str(path))
    assert "'question', 'answer'" in str(info.value) and "Pass fields=" not in str(info.value)
    assert "dataset_kwargs={'fields': {'instruction': ..." in str(info.value)
    # A prompt budget too small names the env's argument.
    with pytest.raises(ConfigError, match="but max_prompt_tokens=2. Raise max_prompt_tokens to at least"):
        gym.make("InstructEnv/Completion-v0", tasks=["copy"], max_prompt_tokens=2).reset(seed=0)


def test_a_misspelled_local_model_folder_is_reported_at_once(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs" / "first" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may reach for the network
    assert main(["eval", "--model", "runs/frist/model", "--out", str(tmp_path / "e"), "--set", "progress=false",
                 "--set", "threads=1"]) != 0
    err = capsys.readouterr().err
    assert "No such folder: 'runs/frist/model'" in err



# -- item 3: data files are split, by a stable hash of each input or by a column ---------------------


def test_file_splits_are_disjoint_deterministic_and_reported(tmp_path, caplog):
    from instruct_env.error import DataFormatError, EmptyDatasetError
    from instruct_env.tasks import example_file, load_file
    from instruct_env.tasks.splits import check_disjoint, input_key, split_sizes

    path = str(example_file())
    keys = {}
    with caplog.at_level(logging.INFO, logger="instruct_env.envs.core"):
        for split in ("train", "validation", "test"):
            env = gym.make("InstructEnv/Completion-v0", dataset=path, split=split)
            keys[split] = {input_key(s) for s in env.unwrapped.setup.dataset}
    assert "40 samples, split by a hash of each input (80/10/10) into 33 train, 5 validation and 2 test" in caplog.text
    assert [len(keys[s]) for s in ("train", "validation", "test")] == [33, 5, 2]
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    assert split_sizes(load_file(path)) == {"train": 33, "validation": 5, "test": 2}  # the same every run
    # A split column: rows say where they belong.
    rows = [{"instruction": f"Say {i}", "output": str(i), "part": ["train", "dev", "test"][i % 3]} for i in range(9)]
    own = tmp_path / "own.jsonl"
    own.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = gym.make("InstructEnv/Completion-v0", dataset=str(own), split="validation",
                   dataset_kwargs={"split_column": "part"})
    assert [s.instruction for s in env.unwrapped.setup.dataset] == ["Say 1", "Say 4", "Say 7"]
    with pytest.raises(DataFormatError, match="line 1: no split column 'prt'"):
        gym.make("InstructEnv/Completion-v0", dataset=str(own), dataset_kwargs={"split_column": "prt"})
    with pytest.raises(EmptyDatasetError, match="The validation split of .* is empty: its 1 samples split"):
        tiny = tmp_path / "tiny.jsonl"
        tiny.write_text(json.dumps(rows[0]) + "\n")
        gym.make("InstructEnv/Completion-v0", dataset=str(tiny), split="validation")
    trained = load_file(str(own))[:2]
    with pytest.raises(DataFormatError, match="1 of the 2 samples of the test split were trained on"):
        check_disjoint(trained, [trained[1], load_file(str(own))[5]], "the test split")


# -- item 1: your own data from the command line and YAML (sft, rl, eval, pipeline) ------------------

#: TINY without the built-in task list, with room for the longest prompt of the example files.
OWN = [o for o in TINY if not o.startswith(("data.tasks", "model.default.n_positions"))] + \
    ["model.default.n_positions=160"]


@pytest.fixture(scope="module")
def own_file(tmp_path_factory):
    """English, Chinese, Japanese and Arabic rows: the two example files in one JSONL file."""
    from instruct_env.tasks import example_file

    path = tmp_path_factory.mktemp("own") / "mixed.jsonl"
    path.write_text(example_file().read_text(encoding="utf-8") + example_file("multilingual").read_text(encoding="utf-8"),
                    encoding="utf-8")
    return path


def test_data_dataset_is_a_config_field_with_checked_neighbours(own_file, tmp_path):
    from agents.common.config import build_config, load_yaml
    from agents.pipeline import PipelineConfig, split_samples
    from instruct_env.error import ConfigError

    config = build_config(PipelineConfig, {}, [f"data.dataset={own_file}"])
    sizes = [len(split_samples(config.data, s, 1)) for s in ("train", "validation", "test")]
    assert sizes == [45, 9, 4]
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(f"data:\n  dataset: {own_file}\n  split_column: language\n")
    with pytest.raises(Exception, match="mixed.jsonl: line 1: no split column 'language'"):  # every row needs it
        split_samples(build_config(PipelineConfig, load_yaml(yaml_file)).data, "train", 1)
    with pytest.raises(ConfigError, match="unset data.tasks"):
        build_config(PipelineConfig, {}, [f"data.dataset={own_file}", "data.tasks=[copy]"])
    with pytest.raises(ConfigError, match=r"no such file or folder .*mixd\.jsonl.*Did you mean .*mixed\.jsonl"):
        split_samples(build_config(PipelineConfig, {}, [f"data.dataset={own_file.parent / 'mixd.jsonl'}"]).data,
                      "train", 1)


def test_a_saved_datasets_folder_keeps_its_own_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    from agents.common.own_data import load_own_data

    rows = lambda n, tag: {"question": [f"{tag} {i}?" for i in range(n)], "answer": [str(i) for i in range(n)]}  # noqa: E731
    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows(5, "t")),
                          "validation": datasets.Dataset.from_dict(rows(2, "v")),
                          "test": datasets.Dataset.from_dict(rows(3, "x"))}).save_to_disk(str(folder))
    data = load_own_data(str(folder), {"instruction": "question", "references": "answer"})
    assert data.sizes() == {"train": 5, "validation": 2, "test": 3}
    assert data.splits["test"][0].instruction == "x 0?" and "own train/validation/test splits" in data.how


def test_own_file_sft_rl_sigint_resume_eval_end_to_end(own_file, tmp_path, monkeypatch, capsys):
    """Own JSONL (English, Chinese, Japanese, Arabic) -> sft -> rl, stopped by SIGINT after update 3 and resumed
    -> the same model as an uninterrupted rl -> eval; then a leaky split column is refused."""
    import os
    import signal

    from safetensors.torch import load_file

    from agents.common.logging import RunLogger

    monkeypatch.setenv("INSTRUCT_ENV_CACHE", str(tmp_path / "cache"))
    sets = [a for o in OWN + ["rl.grpo.total_updates=6", "rl.grpo.eval_every=2"] for a in ("--set", o)]
    sft, full, rl, ev = tmp_path / "sft", tmp_path / "full", tmp_path / "rl", tmp_path / "eval"
    assert main(["sft", "--dataset", str(own_file), "--out", str(sft), *sets]) == 0
    rl_args = ["rl", "--dataset", str(own_file), "--model", str(sft / "model")]
    assert main([*rl_args, "--out", str(full), *sets, "--set", "checkpoint_every=2"]) == 0
    assert (full / "checkpoint" / "rl" / "trainer.pt").exists()  # periodic checkpoints
    capsys.readouterr()
    assert main(["rl", "--resume", str(full)]) == 2 and "that run finished" in capsys.readouterr().err

    log = RunLogger.log

    def interrupt_after_update_3(self, record, *, step, stage="train", kind="train"):
        log(self, record, step=step, stage=stage, kind=kind)
        if (stage, kind, step) == ("rl", "train", 3):
            os.kill(os.getpid(), signal.SIGINT)  # a real signal, while update 3 is still being handled

    monkeypatch.setattr(RunLogger, "log", interrupt_after_update_3)
    capsys.readouterr()
    assert main([*rl_args, "--out", str(rl), *sets]) == 128 + signal.SIGINT
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"instruct-env: Stopped by SIGINT after RL update 3; the model so far is in model/, the checkpoint "
                   f"in checkpoint/. Resume with: instruct-env rl --resume {rl}"]
    assert (rl / "checkpoint" / "rl" / "trainer.pt").exists() and (rl / "model" / "model.safetensors").exists()
    assert "INTERRUPTED: Stopped by SIGINT after RL update 3" in (rl / "report.md").read_text()
    monkeypatch.setattr(RunLogger, "log", log)
    assert main(["rl", "--resume", str(rl)]) == 0

    # The resumed run is the uninterrupted one: every update logged once, the same final weights.
    steps = [json.loads(line)["step"] for line in (rl / "metrics.jsonl").read_text().splitlines()
             if '"stage": "rl"' in line and '"kind": "train"' in line]
    assert steps == [1, 2, 3, 4, 5, 6]
    a, b = load_file(full / "model" / "model.safetensors"), load_file(rl / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    report = (rl / "report.md").read_text()
    assert "45 train, 9 validation and 4 test samples (split 80/10/10 by a stable hash of each input)" in report
    assert "RL reward {'rougeL': {'tokenizer': 'cjk'}}" in report and "Validation metric rougeL" in report
    assert "GRPO, 6 updates" in report and "training reward `{'rougeL': {'tokenizer': 'cjk'}}`" in report
    assert json.loads((rl / "results.json").read_text()) == json.loads((full / "results.json").read_text())
    assert main(["eval", "--dataset", str(own_file), "--model", str(rl / "model"), "--out", str(ev), *sets]) == 0
    assert json.loads((ev / "results.json").read_text())["model"]["num_samples"] == 4

    # SFT stopped by SIGTERM starts again on --resume and ends where an uninterrupted SFT ends.
    def terminate_in_sft(self, record, *, step, stage="train", kind="train"):
        log(self, record, step=step, stage=stage, kind=kind)
        if stage == "sft":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(RunLogger, "log", terminate_in_sft)
    sft2 = tmp_path / "sft2"
    assert main(["sft", "--dataset", str(own_file), "--out", str(sft2), *sets]) == 128 + signal.SIGTERM
    assert "Stopped by SIGTERM during SFT" in capsys.readouterr().err
    monkeypatch.setattr(RunLogger, "log", log)
    assert main(["sft", "--resume", str(sft2)]) == 0
    a, b = load_file(sft / "model" / "model.safetensors"), load_file(sft2 / "model" / "model.safetensors")
    assert all(a[k].equal(b[k]) for k in a)
    # A split column that puts trained inputs into the test split is refused.
    rows = [json.loads(line) for line in own_file.read_text(encoding="utf-8").splitlines()]
    leaky = tmp_path / "leaky.jsonl"
    leaky.write_text("".join(json.dumps({**r, "part": "test" if i < 10 else "validation" if i < 15 else "train"}) + "\n" for i, r in
                             enumerate(rows)), encoding="utf-8")
    assert main(["eval", "--dataset", str(leaky), "--model", str(rl / "model"), "--out", str(tmp_path / "e2"),
                 "--set", "data.split_column=part", *sets]) != 0
    err = capsys.readouterr().err
    assert "of the 10 samples of the test split of" in err and "were trained on" in err


# -- item 10: reward functions are checked when made; weights are not normalised --------------------


def test_a_reward_function_without_kwargs_is_refused_when_made():
    from instruct_env import rewards
    from instruct_env.error import ConfigError

    def two_args(completions, references):
        return [0.0] * len(completions)

    with pytest.raises(ConfigError, match=r"Reward function 'two_args' has the signature \(completions, "
                                          r"references\).*def two_args\(completions, references, \*\*kwargs\)"):
        rewards.make(two_args)
    with pytest.raises(ConfigError, match="has the signature"):
        gym.make("InstructEnv/Completion-v0", tasks=["copy"], reward=lambda c: [0.0] * len(c))

    def fine(completions, references, **kwargs):
        return [float(len(c)) for c in completions]

    assert rewards.make(fine)(["ab"], [["x"]]).tolist() == [2.0]
    both = rewards.make({"exact_match": 1.0, "token_f1": 1.0})  # summed as given: an exact answer scores 2
    assert both(["a cat"], [["a cat"]]).tolist() == [2.0]


def test_lora_from_the_command_line_trains_only_the_adapter_and_saves_a_merged_model(tmp_path, monkeypatch):
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    from agents.common.config import build_config
    from agents.common.pretrain import pretrained_default_model
    from agents.pipeline import PipelineConfig
    from instruct_env.tokenizer import builtin_tokenizer

    monkeypatch.setenv("INSTRUCT_ENV_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "sft"
    options = TINY + ["model.lora_r=4", "model.lora_target_modules=[c_attn]", "sft.lr=1e-2", "sft.keep_best=false"]
    assert main(["sft", "--out", str(out), *[a for o in options for a in ("--set", o)]]) == 0
    assert "LoRA adapter r=4, alpha=16 on ['c_attn']" in (out / "report.md").read_text()
    assert not (out / "model" / "adapter_config.json").exists()  # merged: a plain model folder
    cfg = build_config(PipelineConfig, {}, options).model
    start, _ = pretrained_default_model(builtin_tokenizer(), cfg.default, cfg.pretrain)
    before, after = start.state_dict(), load_file(out / "model" / "model.safetensors")
    assert after["transformer.wte.weight"].equal(before["transformer.wte.weight"])
    assert after["transformer.h.0.mlp.c_fc.weight"].equal(before["transformer.h.0.mlp.c_fc.weight"])
    assert not after["transformer.h.0.attn.c_attn.weight"].equal(before["transformer.h.0.attn.c_attn.weight"])


def test_a_resumed_run_logs_each_step_once(tmp_path):
    """What a resumed run does again (an unfinished SFT, RL after its checkpoint, unsaved evaluations) leaves the log."""
    from agents.common.logging import read_metrics
    from agents.pipeline.run import _drop_unfinished_records

    rows = ([{"stage": "test/zero-shot", "kind": "eval", "step": 0}]
            + [{"stage": "sft", "kind": "train", "step": s} for s in (1, 2, 3)]
            + [{"stage": "test/SFT", "kind": "eval", "step": 0}]
            + [{"stage": "rl", "kind": kind, "step": s} for s in (1, 2, 3, 4) for kind in ("train", "eval")])
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"stage": "rl", "kind"', encoding="utf-8")

    # Stopped during SFT: the SFT records and the evaluation after it go; the zero-shot evaluation stays.
    _drop_unfinished_records(path, {"done": [], "results": {"zero-shot": {}}, "rl": None})
    assert [(r["stage"], r["step"]) for r in read_metrics(path)] == [("test/zero-shot", 0)]

    # Stopped during RL with a checkpoint after update 2: updates 3 and 4 will be logged again.
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    _drop_unfinished_records(path, {"done": ["sft"], "results": {"zero-shot": {}, "SFT": {}}, "rl": {"updates": 2}})
    kept = read_metrics(path)
    assert [r["step"] for r in kept if r["stage"] == "sft"] == [1, 2, 3]
    assert [(r["kind"], r["step"]) for r in kept if r["stage"] == "rl"] == [("train", 1), ("eval", 1), ("train", 2),
                                                                              ("eval", 2)]
    assert len(kept) == 9
