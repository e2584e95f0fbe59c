"""Reward-model training, Django-free: configs, data, losses, the training loop.

Importing this package imports torch; the web app never does (see tests/modeling).
"""
