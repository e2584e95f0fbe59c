"""Annotation quality: inter-annotator agreement and the Quality page for admins."""
