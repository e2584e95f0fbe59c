"""The judges of a new policy, besides the proxy reward models it was optimised against.

A judge is any ready reward model of the registry that an admin marked ``is_judge``,
typically trained on batches (or imported data) the proxies never saw: Gao et al. (2022)'s
"gold" reward model, which reward hacking against the proxies does not fool. A judge that
shares training data with the proxies is refused: it would share their blind spots.

Results of every judge are ``WinRate`` rows (``win_rate_record``); the lineage page reads
them (``rlhf.selectors.lineage_win_rates``).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from rlhf.models import Iteration, JudgedBy, WinRate


class JudgeRefused(ValueError):
    """The judge shares training data with the reward models it is meant to check."""


def _proxy_paths(iteration: Iteration) -> set[str]:
    return {p for p in (iteration.reward_helpfulness_path, iteration.reward_safety_path) if p}


def judge_require_independent(*, judge, batch_ids: set[int], proxy_paths: set[str]) -> None:
    """Raise ``JudgeRefused`` naming what ``judge`` shares with the proxies' training data
    (the batches ``batch_ids`` they are trained on, and the registered models at
    ``proxy_paths``)."""
    from modeling.selectors import judge_shared_data

    shared = judge_shared_data(judge=judge, batch_ids=batch_ids, paths=proxy_paths)
    if shared:
        raise JudgeRefused(
            f"The judge {judge.name} was trained on the proxy reward models' data "
            f"({', '.join(shared)}); a judge must be trained on data they never saw."
        )


def judge_for_launch(*, name: str, batch_ids: list[int], proxy_paths: set[str]):
    """The judge an iteration names in its settings, checked at launch: it exists, is
    marked judge, and shares no batch with the iteration's (the proxies train on them)."""
    from modeling.selectors import judges

    if not name:
        return None
    judge = judges().filter(name=name).first()
    if judge is None:
        raise ValidationError(
            {"settings.evaluation.judge": f"No ready reward model named {name!r} is marked judge."}
        )
    try:
        judge_require_independent(judge=judge, batch_ids=set(batch_ids), proxy_paths=proxy_paths)
    except JudgeRefused as exc:
        raise ValidationError({"settings.evaluation.judge": str(exc)}) from None
    return judge


def judge_for_iteration(iteration: Iteration, name: str):
    """The judge of ``iteration``'s evaluation: the one named (refused if it shares data
    with the proxies), else the newest marked judge that shares none, else None."""
    from modeling.selectors import judges

    batch_ids = set(iteration.batches.values_list("pk", flat=True))
    proxies = _proxy_paths(iteration)
    if name:
        judge = judges().filter(name=name).first()
        if judge is None:
            raise JudgeRefused(f"No ready reward model named {name!r} is marked judge.")
        judge_require_independent(judge=judge, batch_ids=batch_ids, proxy_paths=proxies)
        return judge
    for judge in judges():
        try:
            judge_require_independent(judge=judge, batch_ids=batch_ids, proxy_paths=proxies)
        except JudgeRefused:
            continue
        return judge
    return None


def win_rate_record(
    *,
    iteration: Iteration | None,
    candidate: str,
    baseline: str,
    judged_by: JudgedBy | str,
    judge_name: str,
    outcome: dict,
    details: dict | None = None,
) -> WinRate:
    """Store (or replace, on a rerun) one win rate; ``outcome`` is ``WinTieLoss.as_dict()``
    or a dict holding its keys."""
    fields = {
        k: outcome[k] for k in ("n", "wins", "ties", "losses", "win_rate", "ci_low", "ci_high")
    }
    row, _ = WinRate.objects.update_or_create(
        iteration=iteration,
        candidate_name=candidate,
        baseline_name=baseline,
        judged_by=judged_by,
        defaults={"judge_name": judge_name, "details": details or {}, **fields},
    )
    return row
