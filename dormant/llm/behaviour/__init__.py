"""Behaviour experiments on a model pair.

* ``amplify``: sweep W_base + a (W_ft - W_base) and name the payload that takes over;
* ``compare``: several views side by side on one prompt, with a per-token KL strip.
"""
