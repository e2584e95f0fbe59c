"""Critic-free online RL: GRPO (Shao et al. 2024) and RLOO (Ahmadian et al. 2024), with
the Dr. GRPO (Liu et al. 2025) and DAPO (Yu et al. 2025) corrections. G samples per
prompt, a group baseline instead of a value head, the clipped ratio and a KL term to the
reference in the loss. Reuses PPO's sampling and log-probability pieces. Django-free."""
