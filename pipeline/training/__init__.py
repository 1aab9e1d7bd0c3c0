"""The training machinery every trained model shares: the loop, a family's step interface, the face sets.

``train`` (face models) and ``masks train`` (the segmenter) both run this loop with their
own hooks, so neither stage imports the other.
"""
