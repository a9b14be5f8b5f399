"""Numba kernels: private, pure functions over arrays.

Nothing here validates input; the public layer does that before calling in.
"""
