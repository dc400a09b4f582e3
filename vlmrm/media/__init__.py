"""Shared media layer: frame sampling (qwen-vl-utils rules), video decoding backends, the frame
cache and processor inputs for already sampled frames. Imports only :mod:`vlmrm.core`.
"""
