"""REST API of the annotation app (DRF), mounted at /api/v1/.

Views only translate HTTP: they parse input with a serializer, call one service or
selector, and render the result. Annotator endpoints work on the caller's own tasks;
another annotator's task answers 404, exactly like a task that does not exist.

Annotator cycle::

    GET  /api/v1/tasks/next/                   → 200 task (display order) | 204 queue empty
    POST /api/v1/tasks/{assignment_id}/label/  → 201 label | 200 the same label again
    POST /api/v1/tasks/{assignment_id}/label-and-next/
                                               → 201 {"label": ..., "next": task | null}
                                                 (200 when the label existed): the steady
                                                 state, one request per label, as the page
    POST /api/v1/tasks/{assignment_id}/skip/   → 200
    GET  /api/v1/labels/                       → the caller's own labels
"""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.drainage import set_override
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.authentication import TokenAuthentication
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

import annotation.url_converters  # noqa: F401 - registers <id:...>
from annotation import auth, selectors, services
from annotation.filters import ComparisonFilter, LabelFilter
from annotation.gold.selectors import annotator_pauses_for
from annotation.importers import ImportFileError, ImportTooLargeError
from annotation.models import Label
from annotation.permissions import CanAnnotate, CanExport, CanManageBatches
from annotation.queue import assignments, labels, rules
from annotation.serializers import (
    BatchCreateSerializer,
    BatchSerializer,
    BatchTransitionSerializer,
    ComparisonSerializer,
    ErrorSerializer,
    ImportErrorSerializer,
    ImportInputSerializer,
    ImportReportSerializer,
    LabelAndNextSerializer,
    LabelInputSerializer,
    LabelSerializer,
    PausedSerializer,
    SkipInputSerializer,
    TaskSerializer,
    label_data,
    label_input_from_data,
    paused_body,
    task_data,
)

IDEMPOTENCY_KEY = OpenApiParameter(
    name="Idempotency-Key",
    type=str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Any unique string per intended label (e.g. a UUID), at most "
    f"{rules.IDEMPOTENCY_KEY_MAX_CHARS} characters (a longer one answers 400). Retrying with "
    "the same key returns the first label with 200; reusing it for another task answers 409.",
)
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such task among the caller's own.")


class FastTokenAuthentication(TokenAuthentication):
    """DRF's token authentication with the token and its user read by one prepared
    statement (``auth.token_user``); the same rules: unknown key or inactive user
    → 401."""

    def authenticate_credentials(self, key):
        found = auth.token_user(key)
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not found[0].is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return found


# The schema documents it as DRF's "tokenAuth": the same header, the same rules.
set_override(FastTokenAuthentication, "suppress_collision_warning", True)


def _authentication_classes() -> list:
    return [
        FastTokenAuthentication if cls is TokenAuthentication else cls
        for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES
    ]


class PreloadedPermissionsMixin:
    """Loads the caller's permissions in one query before DRF checks them (``has_perm``
    would make two on every request): ``auth.permissions_preload``."""

    authentication_classes = _authentication_classes()

    def check_permissions(self, request):
        auth.permissions_preload(request.user)
        super().check_permissions(request)


class ServiceApiView(PreloadedPermissionsMixin, APIView):
    """An APIView over the annotation services. Their Django errors become 400/403/404
    in config/api_errors.py; here only the task errors: a task that is gone and another
    annotator's task are one error (``AssignmentGone``), 404, so other annotators' tasks
    cannot be probed."""

    def handle_exception(self, exc):
        if isinstance(exc, assignments.AssignmentGone):
            exc = exceptions.NotFound("No such task among yours.")
        return super().handle_exception(exc)


# --- the annotator's cycle -------------------------------------------------------------


class CycleApiView(ServiceApiView):
    """The annotator's task endpoints: JSON only. They run on every label, and the
    browsable API's renderer costs a content negotiation per request (the schema and its
    docs are at /api/schema/ and /api/docs/)."""

    renderer_classes = [JSONRenderer]
    # Accept headers answered without DRF's negotiation (which parses the header on every
    # request): what it would choose for them, JSON.
    PLAIN_ACCEPT = frozenset({"", "*/*", "application/json"})

    def perform_content_negotiation(self, request, force=False):
        if (
            request.META.get("HTTP_ACCEPT", "").strip() in self.PLAIN_ACCEPT
            and api_settings.URL_FORMAT_OVERRIDE not in request.GET
        ):
            renderer = self.renderer_classes[0]()
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)


class TaskNextApi(CycleApiView):
    permission_classes = [CanAnnotate]

    @extend_schema(
        operation_id="tasks_next",
        summary="The caller's current task, or a new one from the queue",
        responses={
            200: TaskSerializer,
            204: OpenApiResponse(description="Nothing left to label."),
            403: OpenApiResponse(
                PausedSerializer,
                description="Nothing to label because the caller is paused on a batch"
                " (gold accuracy below its threshold, or an admin's decision): which, and why.",
            ),
        },
        tags=["annotate"],
    )
    def get(self, request):
        task = assignments.task_next(annotator=request.user)
        if task is None:
            pauses = annotator_pauses_for(request.user)
            if pauses:
                return Response(paused_body(pauses), status=status.HTTP_403_FORBIDDEN)
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(task_data(task))


LABEL_DESCRIPTION = (
    "Send the judgement in display terms (`preferred_side`: left/right, "
    "`safety_left`/`safety_right`) or in the comparison's stored terms (`preferred`: A/B, "
    "`safety_a`/`safety_b`). A second submit for the same task, or with the same "
    "Idempotency-Key, creates nothing and returns the first label with 200."
)
LABEL_ERRORS = {
    400: OpenApiResponse(description="Invalid input; keys name the fields."),
    404: NOT_FOUND,
    409: OpenApiResponse(ErrorSerializer, description="Idempotency-Key used for another task."),
}
KEY_REUSED = {"detail": "This Idempotency-Key was already used for another task."}


def _label_input(request):
    """The request's judgement as the service's input: ``LabelInputSerializer``'s rules
    (it stays the documented request body), validated without building the serializer.
    An Idempotency-Key longer than the column is refused, never cut: two keys sharing
    their first 100 characters would otherwise name the same label."""
    key = request.headers.get("Idempotency-Key", "")
    problem = rules.idempotency_key_problem(key)
    if problem is not None:
        raise exceptions.ValidationError(
            {"Idempotency-Key": [f"The Idempotency-Key header {problem}."]}
        )
    return label_input_from_data(request.data, idempotency_key=key)


class TaskLabelApi(CycleApiView):
    permission_classes = [CanAnnotate]

    @extend_schema(
        operation_id="tasks_label",
        summary="Label a task (idempotent)",
        description=LABEL_DESCRIPTION,
        parameters=[IDEMPOTENCY_KEY],
        request=LabelInputSerializer,
        responses={
            201: LabelSerializer,
            200: OpenApiResponse(LabelSerializer, description="Already labelled: the first label."),
            **LABEL_ERRORS,
        },
        tags=["annotate"],
    )
    def post(self, request, assignment_id: int):
        data = _label_input(request)
        try:
            label, created = labels.label_submit(
                assignment_id=assignment_id, annotator=request.user, data=data
            )
        except labels.IdempotencyKeyReused:
            return Response(KEY_REUSED, status=status.HTTP_409_CONFLICT)
        return Response(
            label_data(label), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class TaskLabelAndNextApi(CycleApiView):
    permission_classes = [CanAnnotate]

    @extend_schema(
        operation_id="tasks_label_and_next",
        summary="Label a task and receive the next one (idempotent)",
        description=LABEL_DESCRIPTION
        + " The answer carries the caller's next task (`null` when the queue is empty), "
        "exactly what GET /tasks/next/ would return: one request per label.",
        parameters=[IDEMPOTENCY_KEY],
        request=LabelInputSerializer,
        responses={
            201: LabelAndNextSerializer,
            200: OpenApiResponse(
                LabelAndNextSerializer, description="Already labelled: the first label."
            ),
            **LABEL_ERRORS,
        },
        tags=["annotate"],
    )
    def post(self, request, assignment_id: int):
        data = _label_input(request)
        try:
            label, created, task = labels.label_submit_and_next(
                assignment_id=assignment_id, annotator=request.user, data=data
            )
        except labels.IdempotencyKeyReused:
            return Response(KEY_REUSED, status=status.HTTP_409_CONFLICT)
        body = {
            "label": label_data(label),
            "next": None if task is None else task_data(task),
            "paused": []
            if task is not None
            else paused_body(annotator_pauses_for(request.user))["paused"],
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class TaskSkipApi(CycleApiView):
    permission_classes = [CanAnnotate]

    @extend_schema(
        operation_id="tasks_skip",
        summary="Skip a task with a reason (it goes back to the pool for others)",
        request=SkipInputSerializer,
        responses={200: OpenApiResponse(description="Skipped."), 404: NOT_FOUND},
        tags=["annotate"],
    )
    def post(self, request, assignment_id: int):
        serializer = SkipInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        assignment = assignments.assignment_skip(
            assignment_id=assignment_id,
            annotator=request.user,
            reason=serializer.validated_data["reason"],
        )
        return Response({"assignment_id": assignment.pk, "status": assignment.status})


@extend_schema(tags=["annotate"], summary="The caller's own labels, newest first")
class LabelListApi(PreloadedPermissionsMixin, generics.ListAPIView):
    permission_classes = [CanAnnotate]
    serializer_class = LabelSerializer
    filterset_class = LabelFilter
    queryset = Label.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        return selectors.label_list_for(self.request.user)


# --- batches -----------------------------------------------------------------------------


class BatchListCreateApi(ServiceApiView):
    permission_classes = [CanManageBatches]
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS  # the schema reads it too

    @extend_schema(
        operation_id="batches_list", responses=BatchSerializer(many=True), tags=["batches"]
    )
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.batch_list_with_progress(), request, view=self)
        return paginator.get_paginated_response(BatchSerializer(page, many=True).data)

    @extend_schema(
        operation_id="batches_create",
        request=BatchCreateSerializer,
        responses={201: BatchSerializer},
        tags=["batches"],
    )
    def post(self, request):
        serializer = BatchCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        batch = services.batch_create(**serializer.validated_data, created_by=request.user)
        batch = selectors.batch_list_with_progress().get(pk=batch.pk)
        return Response(BatchSerializer(batch).data, status=status.HTTP_201_CREATED)


class BatchDetailApi(ServiceApiView):
    permission_classes = [CanManageBatches]

    @extend_schema(operation_id="batches_retrieve", responses=BatchSerializer, tags=["batches"])
    def get(self, request, batch_id: int):
        batch = get_object_or_404(selectors.batch_list_with_progress(), pk=batch_id)
        return Response(BatchSerializer(batch).data)


class BatchTransitionApi(ServiceApiView):
    permission_classes = [CanManageBatches]

    @extend_schema(
        operation_id="batches_transition",
        summary="Move a batch: draft → open → closed → frozen (closed may reopen)",
        request=BatchTransitionSerializer,
        responses={
            200: BatchSerializer,
            400: OpenApiResponse(description="Transition not allowed."),
        },
        tags=["batches"],
    )
    def post(self, request, batch_id: int):
        serializer = BatchTransitionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        batch = get_object_or_404(selectors.batch_list(), pk=batch_id)
        services.batch_transition(
            batch=batch, to=serializer.validated_data["status"], by=request.user
        )
        return Response(BatchSerializer(selectors.batch_list_with_progress().get(pk=batch_id)).data)


class BatchImportApi(ServiceApiView):
    permission_classes = [CanManageBatches]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="batches_import",
        summary="Import comparisons and/or demonstrations from JSONL (all or nothing, unless skip_invalid)",
        request={"multipart/form-data": ImportInputSerializer},
        responses={
            201: ImportReportSerializer,
            400: OpenApiResponse(
                ImportErrorSerializer,
                description="Invalid rows, or a file that cannot be read: nothing was written.",
            ),
            413: OpenApiResponse(
                ImportErrorSerializer,
                description="The file is over PAIRWISE_IMPORT_MAX_BYTES (as uploaded or "
                "once decompressed): nothing was written.",
            ),
        },
        tags=["batches"],
    )
    def post(self, request, batch_id: int):
        serializer = ImportInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        batch = get_object_or_404(selectors.batch_list(), pk=batch_id)
        upload = data["file"]
        try:
            report = services.comparisons_import(
                batch=batch,
                stream=upload.file,
                fmt=data["format"],
                filename=upload.name,
                category=data.get("category"),
                with_labels=data["with_labels"],
                skip_invalid=data["skip_invalid"],
                created_by=request.user,
                max_bytes=settings.PAIRWISE_IMPORT_MAX_BYTES,
                kind=data["kind"],
            )
        except ImportFileError as exc:
            body = {
                "detail": str(exc),
                "problems": [vars(p) for p in exc.problems],
                "more_problems": exc.more_problems,
                "lines_unchecked": exc.lines_unchecked,
            }
            too_large = isinstance(exc, ImportTooLargeError)
            return Response(
                ImportErrorSerializer(body).data,
                status=(
                    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
                    if too_large
                    else status.HTTP_400_BAD_REQUEST
                ),
            )
        body = {
            **vars(report),
            "skipped_invalid": [vars(p) for p in report.skipped_invalid],
            "summary": report.summary(),
        }
        return Response(ImportReportSerializer(body).data, status=status.HTTP_201_CREATED)


# --- comparisons -------------------------------------------------------------------------


@extend_schema(tags=["batches"], summary="Comparisons with their dialogue and both responses")
class ComparisonListApi(PreloadedPermissionsMixin, generics.ListAPIView):
    permission_classes = [CanManageBatches | CanExport]
    serializer_class = ComparisonSerializer
    filterset_class = ComparisonFilter

    def get_queryset(self):
        return selectors.comparison_list(batch_id=self.kwargs.get("batch_id"))


urlpatterns = [
    path("tasks/next/", TaskNextApi.as_view(), name="api-task-next"),
    path("tasks/<id:assignment_id>/label/", TaskLabelApi.as_view(), name="api-task-label"),
    path(
        "tasks/<id:assignment_id>/label-and-next/",
        TaskLabelAndNextApi.as_view(),
        name="api-task-label-and-next",
    ),
    path("tasks/<id:assignment_id>/skip/", TaskSkipApi.as_view(), name="api-task-skip"),
    path("labels/", LabelListApi.as_view(), name="api-labels"),
    path("batches/", BatchListCreateApi.as_view(), name="api-batches"),
    path("batches/<id:batch_id>/", BatchDetailApi.as_view(), name="api-batch"),
    path(
        "batches/<id:batch_id>/transition/",
        BatchTransitionApi.as_view(),
        name="api-batch-transition",
    ),
    path("batches/<id:batch_id>/import/", BatchImportApi.as_view(), name="api-batch-import"),
    path(
        "batches/<id:batch_id>/comparisons/",
        ComparisonListApi.as_view(),
        name="api-batch-comparisons",
    ),
    path("comparisons/", ComparisonListApi.as_view(), name="api-comparisons"),
]
