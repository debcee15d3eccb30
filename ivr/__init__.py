"""The IVR: the YAML flow language, its runtime, and speech (TTS, prompt cache, read-outs)."""
