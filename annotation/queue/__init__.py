"""The annotator queue: handing out comparisons, labelling them, and what the annotator
sees. The pages (``annotation.views``) and the API (``annotation.api``) both go through it.

- ``rules``: what a label must be (limits, left/right vs stored A/B, safety tags);
- ``assignments``: the queue itself (claim, current task, skip, expiry);
- ``labels``: the one write path of a label (``label_submit_and_next`` per label);
- ``reads``: the task in display order, and the annotator's counts;
- ``statements``: every SQL statement of the above, finished text in
  docs/queue-statements.md.
"""
