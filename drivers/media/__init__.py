"""Media and DSP on plain arrays: G.711, tones, DTMF, call-progress and voice detection, WAV."""
