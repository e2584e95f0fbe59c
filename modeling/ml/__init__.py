"""Django-free ML for reward models: base model, tokenizer, chat template, training, scoring.

Nothing under this folder imports Django (held by import-linter in CI); tasks and services
adapt between the ORM and these modules with plain data.
"""
