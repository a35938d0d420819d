"""Hugging Face checkpoints (config.json, safetensors, tokenizer) to GGUF, without PyTorch.

llama.cpp's own converter needs PyTorch and transformers (several GB); this one reads safetensors
memory-mapped with numpy, one tensor at a time, and writes GGUF with the ``gguf`` package's writer,
name map and vocabulary readers. Architectures are added one at a time, each proven against a
reference forward pass (tests/convert).
"""
