"""Template context: which roles the current user has, for navigation."""

from annotation.permissions import user_roles


def roles(request):
    return {"roles": user_roles(request.user)}
