"""Instruments over a model pair and its views: logit lens, change tracing, restoration
localisation, the sonar (projection on the change's directions), probes with steering, and
activation extraction. Every instrument is a plain function taking a ``ModelPair`` (or a model)
plus a config dataclass and returning a result dataclass; forward hooks live in ``hooks``."""
