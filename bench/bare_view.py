"""The baseline of the annotator-cycle benchmark: a bare Django view, one indexed read and
one insert, behind the same gunicorn, middleware and PostgreSQL as the API.

It reads the caller's token by its primary key (the read every API request also makes)
and inserts one label row; no DRF, no serializers, no permission checks, no transaction
beyond the insert's own.
"""

import uuid

from django.http import HttpResponseForbidden, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework.authtoken.models import Token

from annotation.models import Label


@csrf_exempt
@require_POST
def bare_read_insert(request):
    key = request.headers.get("Authorization", "").removeprefix("Token ").strip()
    user_id = Token.objects.filter(key=key).values_list("user_id", flat=True).first()
    if user_id is None:
        return HttpResponseForbidden()
    label = Label.objects.create(
        comparison_id=int(request.GET["comparison"]),
        source_annotator=f"bench-{user_id}-{uuid.uuid4().hex}",
        preferred="A",
    )
    return JsonResponse({"id": label.pk, "user": user_id}, status=201)
