"""Model construction and the split inference stages. torch and transformers live here.

``base`` (the five-stage adapter interface, ``VisualInput``, ``ModelSpec``), ``registry.load_model``,
``eventgpt`` and ``llava`` (the adapters), ``tokenization`` (the bundled LLaMA tokenizer),
``presets`` (7b and tiny sizes), ``quant`` (``QuantSpec``), ``weights`` (meta build, on-device fill
and quantisation), ``memory`` (KV cache, footprint, peak memory), ``generation`` (prefill/decode).
"""
