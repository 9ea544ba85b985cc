"""Models: loading with clear errors, GGUF files, generation and the inference copy, the tiny and demo models.

    loading       models, adapters and tokenizers with errors a user can act on
    gguf_files    a `.gguf` file as a model, dequantised once into a cached copy
    rollout       generation (static cache, compiled decode on CUDA) and the merged inference copy
    decode        the rollout loop: each distinct prompt prefilled once, finished rows out of the batch
    tiny          the offline tiny Qwen2 model and tokenizer
    warm_start    the demo's starting point, shipped in `demo_model/`
    gguf_tensors  which tensors of a GGUF file the converted model uses (none dropped in silence)
    quantize      QLoRA: the 4-bit NF4 base (bitsandbytes), where it can run
    gguf_export   a merged model written as a GGUF file (f16, q8_0)
"""

__all__ = ["decode", "gguf_export", "gguf_files", "gguf_tensors", "loading", "quantize", "rollout", "tiny", "warm_start"]  # the public modules; `_name` ones are this package's own
