"""Rejection sampling fine-tuning (Llama 2 §3.2.3; RAFT, Dong et al. 2023): K samples per
prompt, the best under the combined reward becomes the fine-tuning target, the policy is
fine-tuned on those targets with the loss on response tokens only. Django-free."""
