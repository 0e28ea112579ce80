"""The RLHF loop: rounds of generate -> feedback -> reward model -> RL -> evaluate, and the demo."""
