"""Face backends: detectors, landmark models, maskers (registered in pipeline/registries.py)."""
