"""The telephony boundary: the `Channel` API, media/DSP and the drivers (simulated board, SIP).

Nothing in here imports from `ivr`, `acd`, `sim` or `hotline`.
"""
