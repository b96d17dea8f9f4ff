"""edge_yolox.train: everything that needs torch (models, SimOTA, losses, data, trainer, export).

Installed from the repository's `train/` folder with the [train] extra.
"""
