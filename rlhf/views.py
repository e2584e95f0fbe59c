"""Pages of the rlhf app: the pipeline (launch, watch, resume), lineage, live annotation.

Views translate HTTP; services and selectors do the work. Partials serve htmx polling;
every page works without JavaScript too.
"""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.permissions import ANNOTATE, DEMONSTRATE, LAUNCH_TRAINING
from rlhf import human_evaluation, live, selectors, services
from rlhf.forms import METHOD_LINES, IterationLaunchForm
from rlhf.models import Iteration
from rlhf.plots import best_of_k_svg, line_chart_svg


def permission(perm: str):
    """Logged-out users go to the login page; logged-in users without ``perm`` get 403."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.has_perm(perm):
                raise PermissionDenied(f"You need the '{perm}' permission.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        m for msgs in getattr(exc, "message_dict", {"": exc.messages}).values() for m in msgs
    )


# What the pipeline page plots of each training stage's steps (the names TRL users know):
# charts of series on a common scale.
_DPO_CHARTS = [
    ("implicit rewards per step", ["rewards/chosen", "rewards/rejected", "rewards/margins"]),
    ("loss and preference accuracy per step", ["loss", "rewards/accuracies"]),
]
_RANKING_CHARTS = [
    ("losses per step", ["loss", "rank_loss", "sft_loss"]),
    ("rank accuracy and reward per step", ["rank_accuracy", "reward_best", "reward_mean"]),
]
_GROUP_CHARTS = [
    ("reward per step", ["reward"]),
    ("KL and clipped share per step", ["kl", "clip_fraction"]),
]
STEP_CHARTS: dict[str, list[tuple[str, list[str]]]] = {
    "ppo": [("reward and KL per step", ["reward", "kl"])],
    "sft": [("loss per step", ["loss"])],
    "dpo": _DPO_CHARTS,
    "online_dpo": _DPO_CHARTS,
    "rrhf": _RANKING_CHARTS,
    "pro": _RANKING_CHARTS,
    "grpo": _GROUP_CHARTS,
    "rloo": _GROUP_CHARTS,
}


def _iteration_context(iteration) -> dict:
    if iteration is None:
        return {"iteration": None}
    stages = list(iteration.stages.all())
    charts = {}
    for stage in stages:
        if stage.name == "rejection_sampling" and stage.result.get("curve"):
            charts["rs"] = best_of_k_svg(stage.result["curve"])
        points = (stage.result.get("monitor") or {}).get("points") or []
        if len(points) >= 2:
            series = {"proxy reward": [p["proxy"] for p in points]}
            if all(p["judge"] is not None for p in points):
                series["judge reward"] = [p["judge"] for p in points]
            charts[f"{stage.name}_overoptimisation"] = line_chart_svg(
                [p["sqrt_kl"] for p in points],
                series,
                title="Probe prompts: reward against √KL",
                x_label="√KL to the starting policy",
                y_label="mean reward",
            )
        steps = stage.result.get("steps") or []
        if len(steps) >= 2:
            for i, (title, keys) in enumerate(STEP_CHARTS.get(stage.name, [])):
                series = {k: [s.get(k) for s in steps] for k in keys if all(k in s for s in steps)}
                if series:
                    charts[f"{stage.name}_{i}"] = line_chart_svg(
                        [s["step"] for s in steps],
                        series,
                        title=f"{stage.get_name_display()}: {title}",
                        x_label="step",
                        y_label="value",
                    )
    busy = any(s.status in ("queued", "running") for s in stages) and iteration.status == "running"
    warnings = [
        (stage, text)
        for stage in stages
        for text in (
            stage.result.get("note", ""),
            ((stage.result.get("monitor") or {}).get("flag") or {}).get("message", ""),
        )
        if text
    ]
    # The iteration's over-long prompts were fitted the same way in every stage: say it once.
    fits = [s for s in stages if (s.result.get("prompt_fit") or {}).get("message")]
    if fits:
        warnings.insert(0, (fits[0], fits[0].result["prompt_fit"]["message"]))
    return {
        "warnings": warnings,
        "win_rates": list(iteration.win_rates.all()),
        "iteration": iteration,
        "stages": stages,
        "charts": charts,
        "busy": busy,
        "evaluation": getattr(iteration, "evaluation", None) if _has_eval(iteration) else None,
    }


def _has_eval(iteration) -> bool:
    from rlhf.models import PolicyEvaluation

    return PolicyEvaluation.objects.filter(iteration=iteration).exists()


@require_GET
@permission(LAUNCH_TRAINING)
def pipeline(request):
    return _render_pipeline(request, selectors.iteration_latest())


def _render_pipeline(request, iteration, form=None, status: int = 200):
    """The pipeline page: one iteration in full, the launch form, every iteration."""
    return render(
        request,
        "rlhf/pipeline.html",
        {
            **_iteration_context(iteration),
            "form": form or IterationLaunchForm(),
            "method_lines": METHOD_LINES,
            "iterations": selectors.iteration_list(),
            "current_policy": selectors.policy_current(),
        },
        status=status,
    )


@require_GET
@permission(LAUNCH_TRAINING)
def iteration_detail(request, iteration_id: int):
    iteration = selectors.iteration_get(iteration_id)
    if iteration is None:
        raise Http404
    return _render_pipeline(request, iteration)


@require_GET
@permission(LAUNCH_TRAINING)
def iteration_stages(request, iteration_id: int):
    iteration = selectors.iteration_get(iteration_id)
    if iteration is None:
        raise Http404
    return render(request, "rlhf/_stages.html", _iteration_context(iteration))


@require_POST
@permission(LAUNCH_TRAINING)
def iteration_launch(request):
    form = IterationLaunchForm(request.POST)
    if not form.is_valid():
        return _render_pipeline(request, selectors.iteration_latest(), form, status=400)
    try:
        iteration = services.iteration_launch(
            batch_ids=[b.pk for b in form.cleaned_data["batches"]],
            method=form.cleaned_data["method"],
            settings_json=form.settings_json(),
            parent=form.cleaned_data["parent"] or None,
            created_by=request.user,
        )
    except ValidationError as exc:
        if hasattr(exc, "error_dict") and form.add_settings_errors(exc.message_dict):
            return _render_pipeline(request, selectors.iteration_latest(), form, status=400)
        messages.error(request, _errors(exc))
        return redirect("rlhf:pipeline")
    messages.success(request, f"Launched {iteration.name}.")
    return redirect("rlhf:iteration", iteration_id=iteration.pk)


@require_POST
@permission(LAUNCH_TRAINING)
def iteration_resume(request, iteration_id: int):
    try:
        stage = services.iteration_resume(iteration_id=iteration_id)
        messages.success(request, f"Resuming at {stage.get_name_display()}.")
    except Iteration.DoesNotExist:
        raise Http404("No such iteration.") from None
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    return redirect("rlhf:iteration", iteration_id=iteration_id)


@require_GET
@permission(LAUNCH_TRAINING)
def lineage(request):
    rows = selectors.lineage_rows()
    for row in rows:
        row.__dict__.setdefault("chart", None)
    charts = {row.name: best_of_k_svg(row.rs_curve) for row in rows if row.rs_curve}
    win_rates = selectors.lineage_win_rates()
    progress = [
        (
            row,
            [
                win_rates.get(row.name, {}).get(against, {}).get(key)
                for against in ("parent", "first")
                for key, _ in JUDGE_ORDER
            ],
        )
        for row in rows
        if row.kind == "policy"
    ]
    siblings = [
        (
            group,
            [
                (
                    it,
                    [
                        win_rates.get(it.policy_name, {}).get("parent", {}).get(key)
                        for key, _ in JUDGE_ORDER
                    ],
                    _last_step(it),
                )
                for it in group.iterations
            ],
        )
        for group in selectors.lineage_siblings()
    ]
    return render(
        request,
        "rlhf/lineage.html",
        {
            "rows": rows,
            "charts": charts,
            "progress": progress,
            "judges": JUDGE_ORDER,
            "siblings": siblings,
        },
    )


def _last_step(iteration) -> str:
    """The last training stage's final step in a few words (what the method optimised)."""
    from rlhf.methods import TRAINING_STAGES

    stages = [s for s in iteration.stages.all() if s.name in TRAINING_STAGES and s.status == "done"]
    if not stages:
        return ""
    last = stages[-1]
    if last.name == "rejection_sampling" and last.result.get("mean_best_reward") is not None:
        return f"Rejection sampling: best-of-K reward {last.result['mean_best_reward']:.3f}"
    step = (last.result.get("steps") or [{}])[-1]
    keys = [k for _, ks in STEP_CHARTS.get(last.name, []) for k in ks][:2]
    shown = ", ".join(f"{k} {step[k]:.3f}" for k in keys if isinstance(step.get(k), int | float))
    return f"{last.get_name_display()}: {shown}" if shown else last.get_name_display()


JUDGE_ORDER = [("proxy", "Proxies"), ("judge", "Judge"), ("people", "People")]


# --- human evaluation batches ---------------------------------------------------------------


@require_GET
@permission(LAUNCH_TRAINING)
def human_evaluations(request):
    return render(
        request,
        "rlhf/human_evaluations.html",
        {
            "evaluations": human_evaluation.human_evaluation_list(),
            "versions": human_evaluation.policy_versions(),
        },
    )


@require_POST
@permission(LAUNCH_TRAINING)
def human_evaluation_create(request):
    try:
        n_prompts = int(request.POST.get("n_prompts") or 50)
    except ValueError:
        messages.error(request, "n_prompts: a whole number of prompts.")
        return redirect("rlhf:human_evaluations")
    try:
        evaluation = human_evaluation.human_evaluation_create(
            candidate=request.POST.get("candidate", ""),
            baseline=request.POST.get("baseline", ""),
            n_prompts=n_prompts,
            created_by=request.user,
        )
    except ValidationError as exc:
        messages.error(request, _errors(exc))
        return redirect("rlhf:human_evaluations")
    messages.success(
        request,
        f"Blind evaluation of {evaluation.candidate_name} against {evaluation.baseline_name} queued.",
    )
    return redirect("rlhf:human_evaluation", evaluation_id=evaluation.pk)


@require_GET
@permission(LAUNCH_TRAINING)
def human_evaluation_detail(request, evaluation_id: int):
    evaluation = human_evaluation.human_evaluation_list().filter(pk=evaluation_id).first()
    if evaluation is None:
        raise Http404
    return render(
        request,
        "rlhf/human_evaluation.html",
        {
            "evaluation": evaluation,
            "result": human_evaluation.human_evaluation_result_get(evaluation),
        },
    )


# --- live multi-turn annotation ------------------------------------------------------------


@require_GET
@permission(ANNOTATE)
def live_page(request, session_id: int | None = None):
    session = (
        live.live_session_get(session_id=session_id, annotator=request.user) if session_id else None
    )
    return render(request, "rlhf/live.html", live.live_context(session))


@require_POST
@permission(ANNOTATE)
def live_prompt(request, session_id: int | None = None):
    try:
        session = live.live_prompt_submit(
            session_id=session_id, annotator=request.user, text=request.POST.get("prompt", "")
        )
    except ValidationError as exc:
        # The page again with the reason, as for any invalid form: 400, nothing written.
        messages.error(request, _errors(exc))
        session = (
            live.live_session_get(session_id=session_id, annotator=request.user)
            if session_id
            else None
        )
        return render(request, "rlhf/live.html", live.live_context(session), status=400)
    return redirect("rlhf:live_session", session_id=session.pk)


@require_GET
@permission(ANNOTATE)
def live_turn_partial(request, session_id: int):
    session = live.live_session_get(session_id=session_id, annotator=request.user)
    return render(request, "rlhf/_live_turn.html", live.live_context(session))


@require_POST
@permission(ANNOTATE)
def live_choose(request, session_id: int):
    try:
        live.live_choose(
            session_id=session_id,
            annotator=request.user,
            preferred=request.POST.get("preferred", ""),
            strength=request.POST.get("strength", ""),
        )
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    return redirect("rlhf:live_session", session_id=session_id)


@require_POST
@permission(DEMONSTRATE)
def live_demonstrate(request, session_id: int):
    """The annotator's own ideal response instead of a choice (a demonstration)."""
    text = request.POST.get("response", "")
    try:
        live.live_demonstrate(session_id=session_id, annotator=request.user, text=text)
    except ValidationError as exc:
        # The page again with the reason and what they wrote: 400, nothing written.
        messages.error(request, _errors(exc))
        session = live.live_session_get(session_id=session_id, annotator=request.user)
        context = {**live.live_context(session), "demonstration_text": text}
        return render(request, "rlhf/live.html", context, status=400)
    messages.success(request, "Saved as a demonstration; it joins the dialogue.")
    return redirect("rlhf:live_session", session_id=session_id)
