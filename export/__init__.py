"""``main.py export``: the trained model as a file other face-swap tools load (DeepFaceLive's ``.dfm``)."""
