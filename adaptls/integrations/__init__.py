"""adaptls strategies inside other training frameworks (optional extras).

- :mod:`adaptls.integrations.hf`: the Hugging Face ``Trainer`` (``pip install adaptls[hf]``).
"""
