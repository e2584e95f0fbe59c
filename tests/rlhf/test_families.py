"""A model brought from elsewhere through every stage, in its own chat template.

For each family (tiny random Llama, Qwen2, GPT-NeoX with their real templates,
tests/chat_families.py): register the folder, train a reward model from it, rejection
sampling, a PPO step, and live annotation with it as the current policy. Its vocabulary
never grows, and no Pairwise marker reaches what it reads or writes.
"""

from __future__ import annotations

import pytest

from modeling import services
from modeling.ml.chat import MODEL, SPECIAL_TOKENS, chat_for
from rlhf.ml.prompts import PromptExample
from tests.chat_families import FAMILIES, make_family_model
from tests.factories import UserFactory
from tests.modeling.conftest import make_pairs

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PROMPTS = [
    PromptExample(({"role": "user", "content": "how do i boil an egg"},), False),
    PromptExample(({"role": "user", "content": "tell me about cold water"},), True),
]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_family_model_through_every_stage(family, tmp_path, settings, client):
    from transformers import AutoModelForCausalLM

    from modeling.ml.inference import RewardScorer
    from modeling.ml.tokenizer import tokenizer_load
    from modeling.ml.training.config import RewardTrainingConfig
    from modeling.ml.training.trainer import reward_model_train
    from rlhf.ml.ppo.config import PPOConfig
    from rlhf.ml.ppo.trainer import PPOTrainer
    from rlhf.ml.rejection_sampling.config import RejectionSamplingConfig
    from rlhf.ml.rejection_sampling.run import run_rejection_sampling
    from rlhf.models import LiveTurn

    settings.MODELS_DIR = tmp_path / "models"
    folder = make_family_model(family, tmp_path / family)
    vocab = len(tokenizer_load(folder))
    base = services.model_register(name=f"{family}-tiny", path=str(folder))
    assert base.config["chat_template"] == MODEL

    # reward model: trained and scored on dialogues in the family's own template
    reward_model_train(
        checkpoint=folder,
        train_pairs=make_pairs(6),
        eval_pairs=make_pairs(2),
        output_dir=tmp_path / "rm",
        work_dir=tmp_path / "rm-work",
        config=RewardTrainingConfig(
            batch_size=2, max_length=96, learning_rate=1e-3, eval_batch_size=4
        ),
    )
    scorer = RewardScorer.load(tmp_path / "rm")
    assert chat_for(scorer.tokenizer).name == MODEL and len(scorer.tokenizer) == vocab

    # Pairwise's markers the family does not have itself (OpenAssistant's has <|assistant|>)
    foreign = [m for m in SPECIAL_TOKENS if m not in FAMILIES[family]["specials"]]

    def reward(contexts, responses, tags):
        for context, response in zip(contexts, responses, strict=True):
            text = chat_for(scorer.tokenizer).dialogue(context, response)
            assert not any(marker in text for marker in foreign)
        return scorer.score(contexts, responses)

    # rejection sampling: sample, score, fine-tune, save
    tokenizer = tokenizer_load(folder)
    result = run_rejection_sampling(
        AutoModelForCausalLM.from_pretrained(folder),
        tokenizer,
        PROMPTS,
        reward,
        RejectionSamplingConfig(num_samples=2, epochs=1, max_new_tokens=8, batch_size=2),
        tmp_path / "rs",
    )
    assert len(result.targets) == 2 and result.sft_losses
    assert chat_for(tokenizer_load(tmp_path / "rs")).name == MODEL
    assert len(tokenizer_load(tmp_path / "rs")) == vocab

    # PPO from the fine-tuned policy
    trainer = PPOTrainer.from_pretrained(
        tmp_path / "rs",
        reward,
        PPOConfig(steps=1, rollout_batch_size=2, mini_batch_size=2, max_new_tokens=8),
    )
    stats = trainer.step(PROMPTS)
    assert stats is not None

    # live annotation: the registered model is the current policy
    client.force_login(UserFactory(username="live", role="annotator"))
    client.post("/rlhf/live/start/", {"prompt": "how do i boil an egg"})
    turn = LiveTurn.objects.get()
    assert turn.status == LiveTurn.Status.READY, turn.error
    for response in (turn.comparison.response_a, turn.comparison.response_b):
        assert response.model_version == base.name
        assert not any(t in response.text for t in FAMILIES[family]["specials"])
