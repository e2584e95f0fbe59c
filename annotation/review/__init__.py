"""Review and adjudication: flags on labels worth a second look, the review queue, and
the reviewers' verdicts (append-only).

- ``rules``: the rule checks over plain rows (fast labels, skewed annotators);
- ``services``: the writes (flags from the rules and from a reward model, verdicts);
- ``selectors``: the reads (the queue, one comparison under review, counts per batch);
- ``views`` / ``urls``: the reviewer's pages under ``/review/``.

The reward-model check itself runs in a worker (``modeling.jobs.label_check_execute``):
this package never imports the modeling app, it only stores what the check found.
"""
