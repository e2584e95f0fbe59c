"""Quality control on the queue's side: gold comparisons and their checks in batches, a
batch's quality settings (gold rate and pause rule, adaptive overlap, queue order), and
the pause state of annotators. The hot path (mixing checks in, scoring them, pausing by
the rule, asking for one more label) lives in ``annotation.queue``."""
