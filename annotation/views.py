"""Pages of the annotation app. Views translate HTTP; services and selectors do the work."""
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from annotation.permissions import user_roles


@require_GET
def home(request):
    roles = user_roles(request.user)
    if roles["annotate"] and not roles["manage"]:
        return redirect("annotate")  # annotators go straight to work
    return render(request, "home.html", {})
