"""Over-optimisation monitor: the proxy reward against an independent judge as the policy
moves away from its reference. Plain Python.

Gao et al. (2022) find the "gold" reward first rises, then falls as the KL to the
reference grows, while the proxy reward the policy is optimised against keeps rising;
Bai et al. (2022, §4.3) find the reward growing roughly linearly in sqrt(KL). So a run logs,
every few steps on a fixed probe set of held-out prompts, the mean proxy reward, the mean
judge reward and the KL, plots both rewards against sqrt(KL), and is flagged when the
judge's reward has fallen from its best while the proxy's kept rising.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlhf.ml.prompts import PromptExample

# (contexts, responses) -> one score each; the judge is a reward model's ScoreFn.
ScoreFn = Callable[[list[list[dict]], list[str]], list[float]]
# (contexts, responses, safety_tagged) -> one combined proxy reward each.
ProxyFn = Callable[[list[list[dict]], list[str], Sequence[bool]], list[float]]


@dataclass(frozen=True)
class ProbePoint:
    step: int
    kl: float  # mean KL(π‖π_ref) per response, nats (the rollout's at that step)
    proxy: float  # mean proxy reward on the probe prompts
    judge: float | None  # mean judge reward on them; None without a judge
    mean_words: float  # mean response length on the probe prompts

    @property
    def sqrt_kl(self) -> float:
        return math.sqrt(max(self.kl, 0.0))

    def as_dict(self) -> dict:
        return {**asdict(self), "sqrt_kl": self.sqrt_kl}


def probe_point(
    *,
    step: int,
    kl: float,
    contexts: list[list[dict]],
    safety_tagged: Sequence[bool],
    responses: list[str],
    proxy: ProxyFn,
    judge: ScoreFn | None,
) -> ProbePoint:
    """Score one probe: the policy's ``responses`` to the probe prompts ``contexts``."""
    proxy_scores = [float(x) for x in proxy(contexts, responses, safety_tagged)]
    judge_scores = [float(x) for x in judge(contexts, responses)] if judge is not None else None
    return ProbePoint(
        step=step,
        kl=kl,
        proxy=statistics.fmean(proxy_scores),
        judge=statistics.fmean(judge_scores) if judge_scores else None,
        mean_words=statistics.fmean(len(r.split()) for r in responses) if responses else 0.0,
    )


def overoptimisation_flag(points: Sequence[ProbePoint], *, tolerance: float = 0.0) -> dict | None:
    """The judge's reward fell from its best while the proxy's rose past that point:
    ``{"peak_step", "last_step", "proxy_change", "judge_change"}``, or None.

    ``tolerance`` is the change (in reward units) below which a move does not count."""
    judged = [p for p in points if p.judge is not None]
    if len(judged) < 2:
        return None
    peak = max(judged, key=lambda p: p.judge)  # type: ignore[arg-type, return-value]
    last = judged[-1]
    if last is peak:
        return None
    judge_change = last.judge - peak.judge  # type: ignore[operator]
    proxy_change = last.proxy - peak.proxy
    if judge_change < -tolerance and proxy_change > tolerance:
        return {
            "peak_step": peak.step,
            "last_step": last.step,
            "proxy_change": proxy_change,
            "judge_change": judge_change,
            "message": (
                f"Over-optimisation: from step {peak.step} to {last.step} the proxy reward rose "
                f"by {proxy_change:+.3f} while the judge's fell by {judge_change:+.3f}. The policy "
                "is exploiting the proxy reward models; stop earlier or raise the KL penalty."
            ),
        }
    return None


def policy_did_not_move(
    *, kls: Sequence[float] = (), losses: Sequence[float] = (), kl_floor: float = 0.01
) -> str:
    """A note when a stage left the policy where it was: the KL to the reference averaged
    below ``kl_floor`` nats over the steps (per-step estimates are noisy around zero, the
    issue measured 0.000 ± 0.007 for a policy that did not move), or the training loss did
    not fall. Empty when it moved."""
    notes = []
    if kls and abs(statistics.fmean(kls)) < kl_floor:
        notes.append(
            f"the KL to the starting policy averaged {statistics.fmean(kls):.4f} nats over "
            f"{len(kls)} steps (below {kl_floor:g})"
        )
    if len(losses) >= 2:
        # Mean of the first and the last quarter: single steps see different mini-batches.
        k = max(1, len(losses) // 4)
        first, last = statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])
        if last >= first:
            notes.append(f"the loss did not fall ({first:.3f} → {last:.3f})")
    if not notes:
        return ""
    return (
        "The policy barely moved: "
        + " and ".join(notes)
        + ". Raise the learning rate or the number of steps/epochs for a model of this size."
    )


class ProbeMonitor:
    """Probes a policy during training on a fixed set of held-out prompts, every ``every``
    steps (and at the start and the end): ``sample(prompts) -> responses`` is the policy
    as it is at that moment."""

    def __init__(
        self,
        prompts: Iterable[PromptExample],
        proxy: ProxyFn,
        judge: ScoreFn | None,
        *,
        every: int,
    ) -> None:
        self.prompts, self.proxy, self.judge, self.every = list(prompts), proxy, judge, every
        self.points: list[ProbePoint] = []

    def due(self, step: int, last_step: int) -> bool:
        return (
            self.every > 0 and bool(self.prompts) and (step % self.every == 0 or step == last_step)
        )

    def probe(
        self, step: int, kl: float, sample: Callable[[list[PromptExample]], list[str]]
    ) -> ProbePoint:
        point = probe_point(
            step=step,
            kl=kl,
            contexts=[list(p.turns) for p in self.prompts],
            safety_tagged=[p.safety_tagged for p in self.prompts],
            responses=sample(self.prompts),
            proxy=self.proxy,
            judge=self.judge,
        )
        self.points.append(point)
        return point

    def as_dict(self) -> dict:
        return {
            "every": self.every,
            "prompts": len(self.prompts),
            "points": [p.as_dict() for p in self.points],
            "flag": overoptimisation_flag(self.points),
        }
