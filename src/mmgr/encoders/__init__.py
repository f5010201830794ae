"""Item encoders: item content in, `float32[N, D]` features (or generated text) out, cached by content."""
