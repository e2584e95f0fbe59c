"""The policy-training methods an iteration can use: what each trains from, what it needs,
what it costs, its stages and its paper. One table, read by the launch form, the command's
help, the API's schema, the README's methods table and ``rlhf.services`` (which stages an
iteration gets). Plain Python, no torch (the web process imports it).

Every method ends the same way (register → evaluate → next batch) and every method but SFT
has reward models: the methods that optimise against them train them first; DPO trains from
the human pairs alone and gets its reward models after, only to be evaluated (the
evaluation compares policies by reward models and judges, as for every method).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.models import Iteration, IterationStage

Method = Iteration.Method
Stage = IterationStage.Name

# The stages that train a policy; the register stage takes the checkpoint of the last one
# that finished, and each starts from the one before it (or the iteration's parent).
TRAINING_STAGES = (
    Stage.SFT,
    Stage.REJECTION_SAMPLING,
    Stage.DPO,
    Stage.ONLINE_DPO,
    Stage.RRHF,
    Stage.PRO,
    Stage.GRPO,
    Stage.RLOO,
    Stage.PPO,
)

_END = (Stage.REGISTER, Stage.EVALUATE, Stage.NEXT_BATCH)


@dataclass(frozen=True)
class MethodInfo:
    method: Method
    trains_from: str  # what the policy learns from
    needs: str  # what must exist before it runs
    cost: str  # what it spends, in words a user can compare
    settings: tuple[str, ...]  # the settings sections of its training stages
    paper: str  # "Authors year, Title" with a link
    stages: tuple[Stage, ...]

    @property
    def label(self) -> str:
        return Method(self.method).label

    @property
    def summary(self) -> str:
        """One line for the launch form."""
        return f"{self.trains_from}; needs {self.needs}; {self.cost}."


METHODS: dict[str, MethodInfo] = {
    info.method: info
    for info in (
        MethodInfo(
            Method.SFT,
            "demonstrations (an ideal response per prompt)",
            "batches holding demonstrations",
            "one fine-tuning pass, no sampling",
            ("sft",),
            "Touvron et al. 2023, Llama 2 §3.1 (https://arxiv.org/abs/2307.09288)",
            (Stage.SFT, Stage.REGISTER, Stage.NEXT_BATCH),
        ),
        MethodInfo(
            Method.REJECTION_SAMPLING,
            "the best of K samples per prompt by the reward models (RAFT)",
            "reward models (trained from the batches when not given)",
            "K samples per prompt, then one fine-tuning pass",
            ("rejection_sampling",),
            "Touvron et al. 2023, Llama 2 §3.2.3; Dong et al. 2023, RAFT (https://arxiv.org/abs/2304.06767)",
            (Stage.REWARD_MODELS, Stage.REJECTION_SAMPLING, *_END),
        ),
        MethodInfo(
            Method.PPO,
            "the reward models' scores of its own samples, online",
            "reward models",
            "one sample per prompt per step, a value head and a reference model in memory",
            ("ppo",),
            "Schulman et al. 2017 (https://arxiv.org/abs/1707.06347); Llama 2 §3.2.3",
            (Stage.REWARD_MODELS, Stage.PPO, *_END),
        ),
        MethodInfo(
            Method.BOTH,
            "rejection sampling, then PPO from its policy (Llama 2's recipe)",
            "reward models",
            "the cost of both",
            ("rejection_sampling", "ppo"),
            "Touvron et al. 2023, Llama 2 §3.2.3",
            (Stage.REWARD_MODELS, Stage.REJECTION_SAMPLING, Stage.PPO, *_END),
        ),
        MethodInfo(
            Method.DPO,
            "the human pairs of the frozen batches directly (no reward model in training)",
            "labelled pairs",
            "one pass over the pairs, no sampling; reference log-probabilities computed once",
            ("dpo",),
            "Rafailov et al. 2023, DPO (https://arxiv.org/abs/2305.18290); IPO: Azar et al. 2023",
            (Stage.DPO, Stage.REWARD_MODELS, *_END),
        ),
        MethodInfo(
            Method.RS_DPO,
            "rejection sampling, then DPO on the human pairs from its policy",
            "reward models and labelled pairs",
            "K samples per prompt and two fine-tuning passes",
            ("rejection_sampling", "dpo"),
            "Llama 2 §3.2.3; Rafailov et al. 2023",
            (Stage.REWARD_MODELS, Stage.REJECTION_SAMPLING, Stage.DPO, *_END),
        ),
        MethodInfo(
            Method.ONLINE_DPO,
            "pairs of its own samples, best against worst by the reward models (iterative DPO)",
            "reward models",
            "K samples per prompt, then one DPO pass",
            ("online_dpo",),
            "Xiong et al. 2024, Iterative preference learning (https://arxiv.org/abs/2312.11456)",
            (Stage.REWARD_MODELS, Stage.ONLINE_DPO, *_END),
        ),
        MethodInfo(
            Method.RRHF,
            "K of its own samples ranked by the reward models (pairwise hinge + SFT on the best)",
            "reward models",
            "K samples per prompt, K responses per forward pass",
            ("rrhf",),
            "Yuan et al. 2023, RRHF (https://arxiv.org/abs/2304.05302)",
            (Stage.REWARD_MODELS, Stage.RRHF, *_END),
        ),
        MethodInfo(
            Method.PRO,
            "K of its own samples ranked by the reward models (listwise softmax + SFT)",
            "reward models",
            "K samples per prompt, K responses per forward pass",
            ("pro",),
            "Song et al. 2024, Preference Ranking Optimization (https://arxiv.org/abs/2306.17492)",
            (Stage.REWARD_MODELS, Stage.PRO, *_END),
        ),
        MethodInfo(
            Method.GRPO,
            "its own samples, G per prompt, against the group's mean reward (online, no critic)",
            "reward models",
            "G samples per prompt per step; no value head",
            ("grpo",),
            "Shao et al. 2024, DeepSeekMath §4 (https://arxiv.org/abs/2402.03300); Dr. GRPO: Liu et al. 2025",
            (Stage.REWARD_MODELS, Stage.GRPO, *_END),
        ),
        MethodInfo(
            Method.RLOO,
            "its own samples, G per prompt, against the others' mean (leave-one-out, online)",
            "reward models",
            "G samples per prompt per step; no value head",
            ("rloo",),
            "Ahmadian et al. 2024, Back to Basics (https://arxiv.org/abs/2402.14740)",
            (Stage.REWARD_MODELS, Stage.RLOO, *_END),
        ),
    )
}


def method_info(method: str) -> MethodInfo:
    return METHODS[Method(method)]


def method_help() -> str:
    """Every method in one line each (the command's ``--method`` help)."""
    return "; ".join(f"{m}: {info.summary}" for m, info in METHODS.items())
