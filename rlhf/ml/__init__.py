"""Django-free ML for policies: generation, rewards, rejection sampling, PPO, evaluation.

Nothing under this folder imports Django (held by import-linter in CI); rlhf/stages.py adapts
between the ORM and these modules with plain data.
"""
