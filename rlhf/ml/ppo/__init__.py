"""PPO written out by hand, split as in OpenRLHF: losses, KL control, experience making,
a replay buffer, and a trainer that ties them together (Llama 2 §3.2.3; Ouyang et al.
2022; Ziegler et al. 2019). Django-free; imports torch."""
