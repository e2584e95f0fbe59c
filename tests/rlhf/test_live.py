"""Live multi-turn annotation: prompt → two generated responses → choice → next turn."""

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Label
from rlhf import live
from rlhf.models import LiveSession, LiveTurn
from tests.factories import BatchFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_live_dialogue_two_turns(client, rlhf_models):
    annotator = UserFactory(username="live", role="annotator")
    client.force_login(annotator)
    assert client.get("/rlhf/live/").status_code == 200
    response = client.post("/rlhf/live/start/", {"prompt": "tell me about egg"})
    assert response.status_code == 302
    session = LiveSession.objects.get()
    turn = LiveTurn.objects.get()  # generated inline here (eager Celery); a worker in production
    assert turn.status == LiveTurn.Status.READY, turn.error
    page = client.get(f"/rlhf/live/{session.pk}/turn/").content.decode()
    assert "Choose and continue" in page and "hx-get" not in page
    a, b = turn.comparison.response_a, turn.comparison.response_b
    assert {a.sampling["temperature"], b.sampling["temperature"]} == {0.7, 1.0}
    client.post(f"/rlhf/live/{session.pk}/choose/", {"preferred": "B", "strength": "better"})
    session.refresh_from_db()
    assert [t["role"] for t in session.turns] == ["user", "assistant"]
    assert session.turns[1]["content"] == b.text
    assert Label.objects.get(comparison=turn.comparison).preferred == "B"
    client.post(f"/rlhf/live/{session.pk}/prompt/", {"prompt": "and water"})
    session.refresh_from_db()
    assert [t["role"] for t in session.turns] == ["user", "assistant", "user"]
    assert LiveTurn.objects.filter(status="ready").count() == 1


def test_live_page_is_for_annotators_and_own_sessions(client, rlhf_models):
    researcher = UserFactory(username="res", role="researcher")
    client.force_login(researcher)
    assert client.get("/rlhf/live/").status_code == 403


@pytest.mark.parametrize("prompt", ["a\u0000b", "a\ud800b"], ids=["nul", "lone-surrogate"])
def test_prompt_a_database_cannot_store_is_refused_and_nothing_written(client, prompt):
    annotator = UserFactory(username="live", role="annotator")
    with pytest.raises(ValidationError) as refused:
        live.live_prompt_submit(session_id=None, annotator=annotator, text=prompt)
    assert "prompt" in refused.value.message_dict
    # The page: a form body can carry the NUL (a surrogate arrives replaced by U+FFFD).
    client.force_login(annotator)
    page = client.post("/rlhf/live/start/", {"prompt": "a\u0000b"})
    assert page.status_code == 400
    assert "The prompt contains a NUL character" in page.content.decode()
    assert not LiveSession.objects.exists() and not LiveTurn.objects.exists()


def test_another_annotators_session_answers_as_a_missing_one(client):
    owner = UserFactory(username="owner", role="annotator")
    session = LiveSession.objects.create(annotator=owner, batch=BatchFactory(name="live"))
    client.force_login(UserFactory(username="other", role="annotator"))
    missing = session.pk + 1000
    for suffix, send in (("", client.get), ("turn/", client.get), ("prompt/", client.post)):
        theirs = send(f"/rlhf/live/{session.pk}/{suffix}", {"prompt": "hi"})
        nothing = send(f"/rlhf/live/{missing}/{suffix}", {"prompt": "hi"})
        assert theirs.status_code == nothing.status_code == 404, suffix
        assert "Nothing here" in theirs.content.decode(), suffix  # the same page as a missing one
    choose = {"preferred": "A", "strength": "better"}
    assert client.post(f"/rlhf/live/{session.pk}/choose/", choose).status_code == 404
    session.refresh_from_db()
    assert session.turns == [] and not LiveTurn.objects.exists()
