"""Test configuration shared by the whole suite.

Fixtures live in ``tests/fixtures/<topic>.py`` (one owner per file) and are registered here
as plugins. Nothing in the suite reaches the network: hub access is switched off before any
Hugging Face library is imported.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    plugin
    for plugin in (
        "tests.fixtures.checkpoints",
        "tests.fixtures.videos",
        "tests.fixtures.vllm_server",
        "tests.fixtures.modules",
        "tests.fixtures.synthesis",
        "tests.fixtures.perception",
    )
    if os.path.exists(os.path.join(os.path.dirname(__file__), "fixtures", plugin.rsplit(".", 1)[-1] + ".py"))
]
