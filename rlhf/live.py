"""Live multi-turn annotation, the Llama 2 protocol (§3.2.1): the annotator writes a
prompt, two responses are sampled in a worker (``rlhf.jobs.live_turn_generate``: two
temperatures of the current policy), the annotator picks and rates, the chosen response
joins the dialogue, and the annotator writes the next turn.

Every turn is a normal comparison in an open "Live annotation" batch with its label, so
live data trains the reward models like any other.

Instead of choosing, the annotator may write the ideal response (``live_demonstrate``):
it is stored as a demonstration (``annotation.models.Demonstration``, written by them) in
the same batch, for supervised fine-tuning, and joins the dialogue in place of a pick.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from annotation import services as annotation_services
from annotation.domain import Choice, Role, Strength, Turn, text_problem
from annotation.models import Assignment, Batch, Demonstration
from annotation.permissions import DEMONSTRATE
from annotation.queue import assignments, labels, rules
from rlhf.models import LiveSession, LiveTurn

MAX_PROMPT_CHARS = 4000
MAX_RESPONSE_CHARS = 20_000  # a written answer may be longer than a prompt
DEMONSTRATED = "Wrote the ideal response instead (live annotation)."


def live_batch_get_or_create() -> Batch:
    """The open (or draft) "Live annotation" batch new live turns go to; a new one if none."""
    batch = (
        Batch.objects.filter(
            name__startswith="Live annotation", status__in=[Batch.Status.DRAFT, Batch.Status.OPEN]
        )
        .order_by("-created_at")
        .first()
    )
    if batch is None:
        batch = annotation_services.batch_create(
            name=f"Live annotation {timezone.now():%Y-%m-%d %H:%M:%S}",
            description="Dialogues written by annotators, responses sampled live.",
        )
    return batch


def live_session_get(*, session_id: int, annotator) -> LiveSession:
    """The annotator's own session; another annotator's is as missing as one that never was
    (the same 404, so an id says nothing about whose it is)."""
    session = LiveSession.objects.filter(pk=session_id, annotator=annotator).first()
    if session is None:
        raise Http404("No such conversation.")
    return session


def live_prompt_submit(*, session_id: int | None, annotator, text: str) -> LiveSession:
    """Add the annotator's next user turn and queue generation of two responses."""
    from rlhf import tasks

    text = text.strip()
    if not text:
        raise ValidationError({"prompt": "Write a prompt first."})
    if len(text) > MAX_PROMPT_CHARS:
        raise ValidationError({"prompt": f"Keep a turn under {MAX_PROMPT_CHARS} characters."})
    if problem := text_problem(text):
        raise ValidationError({"prompt": f"The prompt {problem}."})
    with transaction.atomic():
        if session_id is None:
            session = LiveSession.objects.create(
                annotator=annotator, batch=live_batch_get_or_create()
            )
        else:
            session = LiveSession.objects.select_for_update().get(
                pk=live_session_get(session_id=session_id, annotator=annotator).pk
            )
        if session.live_turns.filter(
            status__in=[LiveTurn.Status.GENERATING, LiveTurn.Status.READY]
        ).exists():
            raise ValidationError({"prompt": "Finish the current turn first."})
        turns = list(session.turns)
        last = session.live_turns.order_by("-created_at").first()
        if (
            last is not None
            and last.status == LiveTurn.Status.FAILED
            and turns
            and turns[-1]["role"] == "user"
        ):
            turns.pop()  # the failed turn's prompt is replaced by this one
        session.turns = [*turns, {"role": "user", "content": text}]
        session.save(update_fields=["turns"])
        turn = LiveTurn.objects.create(session=session, prompt_text=text)
        transaction.on_commit(lambda: tasks.live_turn_generate.delay(turn.pk))
    return session


def live_choose(*, session_id: int, annotator, preferred: str, strength: str) -> None:
    """Label the ready turn; the chosen response joins the dialogue."""
    with transaction.atomic():
        session = LiveSession.objects.select_for_update().get(
            pk=live_session_get(session_id=session_id, annotator=annotator).pk
        )
        turn = (
            session.live_turns.filter(status=LiveTurn.Status.READY)
            .select_related("comparison")
            .first()
        )
        if turn is None:
            raise ValidationError({"turn": "There is no pair of responses waiting for a choice."})
        assignment = Assignment.objects.get(comparison=turn.comparison, annotator=annotator)
        labels.label_submit(
            assignment_id=assignment.pk,
            annotator=annotator,
            data=rules.LabelInput(preferred=preferred, strength=strength),
        )
        chosen = turn.comparison.response(Choice(preferred)).text
        session.turns = [*session.turns, {"role": "assistant", "content": chosen}]
        session.save(update_fields=["turns"])
        LiveTurn.objects.filter(pk=turn.pk).update(status=LiveTurn.Status.LABELLED)


def live_demonstrate(*, session_id: int, annotator, text: str) -> Demonstration:
    """The annotator's own ideal response to the dialogue so far, instead of choosing
    between the two sampled ones (or after their generation failed).

    Stored as a ``Demonstration`` written by them in the session's batch (the live batch
    when that one is closed), with the session, the turn and the pair it replaced as
    provenance; it joins the dialogue as the assistant's turn. The pair is not labelled:
    its assignment is skipped with the reason, so it goes back to the pool for others.
    Needs ``annotation.add_demonstration`` (``PermissionDenied`` otherwise).
    """
    if not annotator.has_perm(DEMONSTRATE):
        raise PermissionDenied("You may not write demonstrations.")
    text = text.strip()
    if not text:
        raise ValidationError({"response": "Write the response first."})
    if len(text) > MAX_RESPONSE_CHARS:
        raise ValidationError(
            {"response": f"Keep a response under {MAX_RESPONSE_CHARS} characters."}
        )
    if problem := text_problem(text):
        raise ValidationError({"response": f"The response {problem}."})
    with transaction.atomic():
        session = LiveSession.objects.select_for_update().get(
            pk=live_session_get(session_id=session_id, annotator=annotator).pk
        )
        turn = session.live_turns.order_by("-created_at").select_related("comparison").first()
        waiting = (LiveTurn.Status.READY, LiveTurn.Status.FAILED)
        if turn is None or turn.status not in waiting or session.turns[-1]["role"] != Role.USER:
            raise ValidationError({"response": "There is no prompt waiting for a response."})
        batch = session.batch
        if batch.status not in (Batch.Status.DRAFT, Batch.Status.OPEN):
            batch = live_batch_get_or_create()
        provenance: dict = {"live_session": session.pk, "live_turn": turn.pk}
        if turn.comparison is not None:
            comparison = turn.comparison
            provenance["instead_of_comparison"] = comparison.pk
            assignment = (
                comparison.assignments.filter(
                    annotator=annotator, status=Assignment.Status.ASSIGNED
                )
                .values_list("pk", flat=True)
                .first()
            )
            if assignment is not None:
                assignments.assignment_skip(
                    assignment_id=assignment, annotator=annotator, reason=DEMONSTRATED
                )
        demonstration = annotation_services.demonstration_create(
            batch=batch,
            turns=[Turn(Role(t["role"]), t["content"]) for t in session.turns],
            response=text,
            source="live",
            written_by=annotator,
            provenance=provenance,
        )
        session.turns = [*session.turns, {"role": "assistant", "content": text}]
        session.save(update_fields=["turns"])
        # LiveTurn has no status of its own for this: the turn is answered, the composer
        # comes back for the next user turn.
        LiveTurn.objects.filter(pk=turn.pk).update(status=LiveTurn.Status.LABELLED)
    return demonstration


def live_context(session: LiveSession | None) -> dict:
    turn = (
        session.live_turns.order_by("-created_at")
        .select_related("comparison__response_a", "comparison__response_b")
        .first()
        if session
        else None
    )
    shown = None
    if turn is not None and turn.status == LiveTurn.Status.READY:
        left = (
            Assignment.objects.filter(comparison=turn.comparison, annotator=session.annotator)
            .values_list("left", flat=True)
            .first()
            or "A"
        )
        first, second = Choice(left), Choice(left).other
        shown = [
            (first.value, turn.comparison.response(first).text),
            (second.value, turn.comparison.response(second).text),
        ]
    return {
        "session": session,
        "turn": turn,
        "shown": shown,
        "strengths": list(Strength),
        "generating": turn is not None and turn.status == LiveTurn.Status.GENERATING,
        # The ideal response may be written while the pair waits, or when it failed.
        "may_demonstrate": bool(
            turn is not None
            and turn.status in (LiveTurn.Status.READY, LiveTurn.Status.FAILED)
            and session.turns
            and session.turns[-1]["role"] == Role.USER
            and session.annotator.has_perm(DEMONSTRATE)
        ),
        "max_response_chars": MAX_RESPONSE_CHARS,
    }
