"""Trigger recovery: objectives, a resumable candidate store, and one module per method.

``objectives`` scores candidates (payload gain, contrast, fluency); ``sweep`` tries every
vocabulary token and word; ``readout_seeds`` takes the trigger-side read-out of the weight change;
``extract`` samples the chat template's bare prefixes and keeps what the fine-tune says far more
readily than the base (trigger and payload candidates); ``beam`` grows phrases word by word;
``portfolio`` runs them in order and verifies the leaders. Not implemented here: GCG, soft prompts.
"""
