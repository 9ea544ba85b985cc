"""Which tensors of a GGUF file the model transformers built from it leaves unused (gguf_models.py asks).

    unused_tensors(Path("model.gguf"), model)   # ["blk.0.attn_q.bias", ...]: dropped in conversion

transformers reads a GGUF file by mapping each of its tensor names to a parameter of the model it built from
the file's metadata, and silently skips a tensor with no parameter: a llama-architecture file carrying
attention biases (llama.cpp loads them) converts to a Llama without them. This runs the same mapping
(transformers' `get_gguf_hf_weights_map` and the architecture's tensor processor, which may rename or merge
tensors) over the file's tensor list, read from its header without the weights (a second read of the
header: ~2 s for SmolLM2-135M's 49k-token vocabulary, once per conversion). It depends on transformers'
GGUF module, which is not a stable API; if that module changes, the check fails loudly, never silently.
Left out on purpose: `rope_freqs.weight`, which llama.cpp derives from the rope-scaling settings that
transformers reads from the metadata.
"""

from __future__ import annotations

from pathlib import Path

DERIVED = ("rope_freqs.weight",)  # computed from the metadata, not weights a model holds


def unused_tensors(path: Path, model) -> list[str]:
    """Names of the tensors of the GGUF file `path` that no parameter of `model` (built from it) took."""
    from gguf import GGUFReader, dequantize
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        read_field,
    )

    reader = GGUFReader(str(path))
    architecture = read_field(reader, "general.architecture")[0]
    config = model.config.to_dict()  # what transformers parsed from the metadata, under the same names
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=config)
    mapping = get_gguf_hf_weights_map(model, processor)
    unused = []
    for tensor in reader.tensors:
        if tensor.name in mapping or tensor.name in DERIVED:
            continue
        # a processor may rename the tensor, or consume it into others (MoE experts): ask it, as loading does
        parsed = {"tensors": {}, "config": config}
        result = processor.process(weights=dequantize(tensor.data, tensor.tensor_type), name=tensor.name,
                                   tensor_key_mapping=mapping, parsed_parameters=parsed)
        if not (result.name is None or result.name in mapping or parsed["tensors"]):
            unused.append(tensor.name)
    return unused
