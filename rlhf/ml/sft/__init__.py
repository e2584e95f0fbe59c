"""Supervised fine-tuning on demonstrations (Llama 2 §3.1, the first step before any
preference data): the policy learns the ideal responses people wrote, with the loss on the
response tokens only. Django-free; imports torch."""
