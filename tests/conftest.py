"""Suite-wide settings: the tests never reach the network, so the Hugging Face hub client is put
in offline mode before anything imports it (``huggingface_hub`` reads it once, at import)."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
