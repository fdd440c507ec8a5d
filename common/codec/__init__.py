"""Codecs: how a crossing tensor is encoded on the wire (the edge encodes, the worker decodes).

numpy, Pillow and zstandard only: the model layer measures codecs (sizes, times, fidelity) and
the runtime applies them, so this layer sits below both and imports neither.
"""
