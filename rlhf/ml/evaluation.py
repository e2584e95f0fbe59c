"""Judging a new policy against the previous one with the reward models (Llama 2 §3.4.1
uses the RMs as a proxy for human judgement between iterations). Plain Python."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from annotation.domain import STRENGTH_ORDER, Strength
from rlhf.ml.prompts import PromptExample
from rlhf.ml.rewards import SAFETY_THRESHOLD, CombinedReward, ScoreFn

Z_95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927); ties count as half."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class WinTieLoss:
    """How often a candidate beat a baseline, prompt by prompt, by one judge.

    A tie counts as half a win (Llama 2 §3.4 reports win / tie / loss; the win rate here is
    the share of the comparisons the candidate is preferred in, ties split evenly), and the
    interval is Wilson's on that share."""

    wins: int
    ties: int
    losses: int

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def win_rate(self) -> float:
        return (self.wins + self.ties / 2) / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.wins + self.ties / 2, self.n)

    def as_dict(self) -> dict:
        low, high = self.interval
        return {
            "n": self.n,
            "wins": self.wins,
            "ties": self.ties,
            "losses": self.losses,
            "win_rate": self.win_rate,
            "ci_low": low,
            "ci_high": high,
        }


WIN, TIE, LOSS = 1, 0, -1


def win_tie_loss(outcomes: Iterable[int]) -> WinTieLoss:
    """Count outcomes: ``WIN`` (1), ``TIE`` (0), ``LOSS`` (-1), one per prompt or label."""
    counts = {WIN: 0, TIE: 0, LOSS: 0}
    for outcome in outcomes:
        if outcome not in counts:
            raise ValueError(f"An outcome is 1 (win), 0 (tie) or -1 (loss), not {outcome!r}.")
        counts[outcome] += 1
    return WinTieLoss(counts[WIN], counts[TIE], counts[LOSS])


def outcomes_from_scores(
    candidate: Sequence[float], baseline: Sequence[float], *, tie_margin: float = 1e-6
) -> list[int]:
    """Per prompt: the candidate wins when its score is higher by more than ``tie_margin``."""
    out = []
    for c, b in zip(candidate, baseline, strict=True):
        out.append(TIE if abs(c - b) <= tie_margin else WIN if c > b else LOSS)
    return out


@dataclass(frozen=True)
class LengthStats:
    """A policy's responses: length in words, and how many were empty or cut off."""

    n: int
    mean_words: float
    empty_share: float
    truncated_share: float  # the length cap ended them, not the end-of-turn marker

    def as_dict(self) -> dict:
        return asdict(self)


def length_stats(texts: Sequence[str], finished: Sequence[bool] | None = None) -> LengthStats:
    """``finished[i]`` is False when response i hit ``max_new_tokens`` (None: unknown)."""
    n = len(texts)
    if n == 0:
        return LengthStats(0, 0.0, 0.0, 0.0)
    words = [len(t.split()) for t in texts]
    truncated = sum(not f for f in finished) / n if finished is not None else 0.0
    return LengthStats(
        n=n,
        mean_words=statistics.fmean(words),
        empty_share=sum(not t.strip() for t in texts) / n,
        truncated_share=truncated,
    )


@dataclass(frozen=True)
class PolicyComparison:
    n_prompts: int
    wins: int
    ties: int
    losses: int
    win_rate: float  # (wins + ties/2) / n
    ci_low: float
    ci_high: float
    candidate_helpfulness: float
    candidate_safety: float
    candidate_unsafe_share: float
    baseline_helpfulness: float
    baseline_safety: float
    baseline_unsafe_share: float

    def as_dict(self) -> dict:
        return asdict(self)


def compare_policies(
    prompts: Sequence[PromptExample],
    candidate: Sequence[str],
    baseline: Sequence[str],
    reward: CombinedReward,
    *,
    threshold: float = SAFETY_THRESHOLD,
    tie_margin: float = 1e-6,
) -> PolicyComparison:
    """``candidate[i]`` and ``baseline[i]`` answer ``prompts[i]``; the combined reward judges."""
    if not prompts:
        raise ValueError("No held-out prompts to evaluate on.")
    contexts = [list(p.turns) for p in prompts]
    tags = [p.safety_tagged for p in prompts]
    cand = reward.breakdown(contexts, list(candidate), tags)
    base = reward.breakdown(contexts, list(baseline), tags)
    tally = win_tie_loss(outcomes_from_scores(cand.combined, base.combined, tie_margin=tie_margin))
    low, high = tally.interval
    return PolicyComparison(
        n_prompts=tally.n,
        wins=tally.wins,
        ties=tally.ties,
        losses=tally.losses,
        win_rate=tally.win_rate,
        ci_low=low,
        ci_high=high,
        candidate_helpfulness=statistics.fmean(cand.helpfulness),
        candidate_safety=statistics.fmean(cand.safety),
        candidate_unsafe_share=cand.unsafe_share(threshold),
        baseline_helpfulness=statistics.fmean(base.helpfulness),
        baseline_safety=statistics.fmean(base.safety),
        baseline_unsafe_share=base.unsafe_share(threshold),
    )


def compare_by_judge(
    prompts: Sequence[PromptExample],
    candidate: Sequence[str],
    baseline: Sequence[str],
    judge: ScoreFn,
    *,
    tie_margin: float = 1e-6,
) -> dict:
    """The candidate against the baseline by one reward model the policy was not optimised
    against (the "gold" reward model of Gao et al. 2022): win / tie / loss with its interval
    and both mean scores."""
    if not prompts:
        raise ValueError("No held-out prompts to evaluate on.")
    contexts = [list(p.turns) for p in prompts]
    cand = [float(x) for x in judge(contexts, list(candidate))]
    base = [float(x) for x in judge(contexts, list(baseline))]
    if not all(math.isfinite(x) for x in cand + base):
        raise ValueError("The judge returned a non-finite score (NaN or inf).")
    tally = win_tie_loss(outcomes_from_scores(cand, base, tie_margin=tie_margin))
    return {
        **tally.as_dict(),
        "candidate_score": statistics.fmean(cand),
        "baseline_score": statistics.fmean(base),
    }


# --- people ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HumanJudgement:
    """One person's label on one blind pair of an evaluation batch, in the candidate's terms."""

    category: str
    candidate_preferred: bool
    strength: str  # a Strength value; "" when unrated
    # The proxy reward models' combined score of the candidate's response minus the
    # baseline's on the same pair; None when the pair was not scored.
    reward_margin: float | None = None


def human_outcome(judgement: HumanJudgement) -> int:
    """ "Negligibly better / Unsure" is a tie (Llama 2 §3.4.2 counts it so); otherwise the
    preferred side wins."""
    if judgement.strength == Strength.NEGLIGIBLY_BETTER_OR_UNSURE:
        return TIE
    return WIN if judgement.candidate_preferred else LOSS


def human_evaluation_result(judgements: Sequence[HumanJudgement]) -> dict:
    """Win / tie / loss by people, overall and per category, and how the reward models agree
    with them on the same pairs: the share of decided labels whose side the reward margin
    picks too, and the mean margin (preferred minus other) by the rated strength (a table
    in the manner of Llama 2's Fig. 15, reward-model score against human rating)."""
    overall = win_tie_loss(human_outcome(j) for j in judgements)
    categories = sorted({j.category for j in judgements})
    by_category = {
        c: win_tie_loss(human_outcome(j) for j in judgements if j.category == c).as_dict()
        for c in categories
    }
    scored = [j for j in judgements if j.reward_margin is not None]
    decided = [j for j in scored if human_outcome(j) != TIE and j.reward_margin != 0]
    agree = sum((j.reward_margin > 0) == j.candidate_preferred for j in decided)  # type: ignore[operator]
    by_strength = []
    for strength in STRENGTH_ORDER:
        rows = [j for j in scored if j.strength == strength]
        margins = [j.reward_margin if j.candidate_preferred else -j.reward_margin for j in rows]  # type: ignore[operator]
        by_strength.append(
            {
                "strength": strength.value,
                "label": strength.label,
                "n": len(rows),
                "mean_margin": statistics.fmean(margins) if margins else None,  # type: ignore[arg-type]
                "rm_agrees": sum(m > 0 for m in margins) / len(rows) if rows else None,  # type: ignore[operator]
            }
        )
    return {
        **overall.as_dict(),
        "by_category": by_category,
        "agreement": {
            "n": len(decided),
            "share": agree / len(decided) if decided else None,
            "by_strength": by_strength,
        },
    }
