"""Live multi-turn annotation: prompt → two generated responses → choice → next turn."""

import pytest

from annotation.models import Label
from rlhf.models import LiveSession, LiveTurn
from tests.factories import UserFactory

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
