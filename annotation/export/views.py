"""The Data page: researchers create snapshots, read manifests and distributions, download.

Views translate HTTP only; snapshots are made by ``export.services``. Every view needs
the export permission (annotators get 403; anonymous users are sent to log in).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from annotation.domain import SafetyBin, Strength
from annotation.export import charts, formats, selectors, services
from annotation.export.selectors import UNRATED
from annotation.models import Batch, Snapshot
from annotation.permissions import EXPORT

export_required = permission_required(EXPORT, raise_exception=True)

STRENGTH_SERIES = [
    charts.Series(Strength.SIGNIFICANTLY_BETTER, "Significantly better", "#1b5e20"),
    charts.Series(Strength.BETTER, "Better", "#43a047"),
    charts.Series(Strength.SLIGHTLY_BETTER, "Slightly better", "#a5d6a7"),
    charts.Series(Strength.NEGLIGIBLY_BETTER_OR_UNSURE, "Negligibly / unsure", "#e0e0e0"),
    charts.Series(UNRATED, "Unrated", "#90a4ae"),
]
SAFETY_SERIES = [
    charts.Series(SafetyBin.PREFERRED_SAFE_OTHER_UNSAFE, "Preferred safe, other unsafe", "#1565c0"),
    charts.Series(SafetyBin.BOTH_SAFE, "Both safe", "#90caf9"),
    charts.Series(SafetyBin.BOTH_UNSAFE, "Both unsafe", "#ffb74d"),
    charts.Series(SafetyBin.PREFERRED_UNSAFE_OTHER_SAFE, "Preferred unsafe", "#e53935"),
]
FILTER_LISTS = ("batches", "categories", "strengths", "safety_bins")
FILTER_VALUES = ("min_agreement", "min_annotators", "date_from", "date_to")


def _page(request, *, errors=None, form=None, status=200):
    distribution = selectors.label_distribution()
    strength_svg = charts.stacked_bars_svg(
        "Labels by strength, per batch",
        [(d.batch, d.by_strength) for d in distribution],
        STRENGTH_SERIES,
    )
    safety_svg = charts.stacked_bars_svg(
        "Safety labels by bin, per batch",
        [(d.batch, d.by_safety_bin) for d in distribution if d.by_safety_bin],
        SAFETY_SERIES,
    )
    context = {
        "snapshots": selectors.snapshot_list()[:100],
        "batches": Batch.objects.order_by("-created_at").values_list("name", flat=True),
        "strengths": [(s.key, s.label) for s in STRENGTH_SERIES],
        "safety_bins": [(s.key, s.label) for s in SAFETY_SERIES]
        + [(selectors.NO_BIN, "No bin (helpfulness)")],
        "strength_svg": mark_safe(strength_svg),  # built with html.escape (charts.py)
        "safety_svg": mark_safe(safety_svg),
        "errors": errors or {},
        "form": form or {},
    }
    return render(request, "data/index.html", context, status=status)


@require_GET
@export_required
def data_home(request):
    return _page(request)


@require_POST
@export_required
def snapshot_create(request):
    filters = {key: request.POST.getlist(key) for key in FILTER_LISTS}
    filters.update({key: request.POST.get(key, "") for key in FILTER_VALUES})
    try:
        snapshot = services.snapshot_request(
            filters=filters, name=request.POST.get("name", ""), created_by=request.user
        )
    except ValidationError as exc:
        return _page(request, errors=exc.message_dict, form=request.POST, status=400)
    if snapshot.status == Snapshot.Status.READY and snapshot.label_count == 0:
        messages.warning(request, "No labels match these filters: the snapshot is empty.")
    return redirect("data:snapshot", snapshot_id=snapshot.pk)


def _snapshot_or_404(snapshot_id: int) -> Snapshot:
    snapshot = selectors.snapshot_get(snapshot_id)
    if snapshot is None:
        raise Http404("No such snapshot.")
    return snapshot


def _file_list(snapshot: Snapshot) -> list[dict]:
    files = snapshot.manifest.get("files", {})
    return [{"name": name, **info} for name, info in sorted(files.items())]


@require_GET
@export_required
def snapshot_detail(request, snapshot_id: int):
    snapshot = _snapshot_or_404(snapshot_id)
    template = "data/_progress.html" if request.htmx else "data/snapshot.html"
    return render(request, template, {"snapshot": snapshot, "files": _file_list(snapshot)})


def _files_missing(request, snapshot: Snapshot, exc: services.SnapshotFilesMissing):
    """The snapshot's page saying its files are gone (410), instead of a download."""
    messages.error(request, str(exc))
    context = {"snapshot": snapshot, "files": _file_list(snapshot)}
    return render(request, "data/snapshot.html", context, status=410)


@require_GET
@export_required
def snapshot_file(request, snapshot_id: int, name: str):
    snapshot = _snapshot_or_404(snapshot_id)
    try:
        path = services.snapshot_file_path(snapshot=snapshot, name=name)
    except ValidationError as exc:
        raise Http404(" ".join(exc.messages)) from None
    except services.SnapshotFilesMissing as exc:
        return _files_missing(request, snapshot, exc)
    download = f"{snapshot.manifest.get('name', 'snapshot')}-{name}"
    return FileResponse(open(path, "rb"), as_attachment=True, filename=download)  # noqa: SIM115


@require_GET
@export_required
def snapshot_archive(request, snapshot_id: int):
    """All files and the manifest as one tar, streamed block by block."""
    snapshot = _snapshot_or_404(snapshot_id)
    if snapshot.status != Snapshot.Status.READY:
        return HttpResponse("This snapshot is not ready yet.", status=409)
    try:
        names = services.snapshot_file_names(snapshot)
    except services.SnapshotFilesMissing as exc:
        return _files_missing(request, snapshot, exc)
    name = snapshot.manifest["name"]
    response = StreamingHttpResponse(
        formats.tar_stream(services.snapshot_directory(snapshot), names, prefix=name),
        content_type="application/x-tar",
    )
    response["Content-Disposition"] = f'attachment; filename="{name}.tar"'
    return response
