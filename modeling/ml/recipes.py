"""Data recipes and the held-out split, plain Python (no Django, no torch).

Llama 2 §3.2.2: the helpfulness RM trains on all helpfulness data plus an equal amount
sampled from the safety data; the safety RM on all safety data plus 10% helpfulness.
Safety pairs whose preferred response was tagged unsafe while the other was safe are left
out of safety-RM training (they would teach it to prefer the unsafe answer).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from annotation.domain import Category, PreferencePair, SafetyBin
from modeling.ml.training.config import DataRecipe


class RecipeError(ValueError):
    """The recipe selected nothing to train on, or its input is unusable."""


@dataclass(frozen=True)
class Split:
    train: list[PreferencePair]
    held_out: list[PreferencePair]
    held_out_keys: list[str]  # prompt keys of the held-out pairs: the split, recorded per run


def prompt_key(pair: PreferencePair) -> str:
    """Pairs sharing a dialogue share a key, so a prompt is never on both sides of the split."""
    text = "\x1e".join(f"{t.role}\x1f{t.content}" for t in pair.context)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def held_out_split(pairs: Sequence[PreferencePair], *, fraction: float, seed: int) -> Split:
    """Hold out ``fraction`` of the prompts, chosen by a seeded hash: the same pairs and seed
    always give the same split, whatever the order they come in."""

    def bucket(key: str) -> float:
        digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    train, held, keys = [], [], set()
    for pair in pairs:
        key = prompt_key(pair)
        if bucket(key) < fraction:
            held.append(pair)
            keys.add(key)
        else:
            train.append(pair)
    return Split(train=train, held_out=held, held_out_keys=sorted(keys))


def recipe_select(pairs: Sequence[PreferencePair], recipe: DataRecipe) -> list[PreferencePair]:
    """The training pairs of ``recipe`` from ``pairs`` (already held-out-free)."""
    own = Category(recipe.kind)
    other = Category.SAFETY if own is Category.HELPFULNESS else Category.HELPFULNESS
    mine = [p for p in pairs if p.category == own]
    theirs = [p for p in pairs if p.category == other]
    if own is Category.SAFETY and recipe.drop_preferred_unsafe:
        mine = [p for p in mine if p.safety_bin != SafetyBin.PREFERRED_UNSAFE_OTHER_SAFE]
    if not mine:
        raise RecipeError(
            f"the {recipe.kind} recipe found no {own} pairs to train on "
            f"({len(pairs)} labelled pair(s) in the chosen batches)"
        )
    n_other = min(len(theirs), round(len(mine) * recipe.effective_other_ratio))
    sampled = random.Random(recipe.seed).sample(theirs, n_other) if n_other else []
    return mine + sampled
