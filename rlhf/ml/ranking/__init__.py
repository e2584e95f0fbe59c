"""RRHF and PRO: ranking losses over K policy samples per prompt, ranked by the combined
reward (``rlhf.ml.ranked.sample_ranked``). Django-free; this package's ``__init__`` and
``config`` import no torch (the iteration settings import the configs)."""
