"""Deterministic test subjects with known answers: planted-backdoor chat models (``dormant.zoo.llm``)
and compiled hash networks (``dormant.zoo.net``)."""
