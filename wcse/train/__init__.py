"""Supervised finetuning of target LMs on (filtered) synthetic solutions, run in a worker process."""
