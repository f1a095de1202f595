"""Built-in dialect readers, one module each; importing this package registers them.

Priority (lower is tried first): hubkit 10, reference-v2 20, consumer-gpu 30, consumer-gpu-ar 40,
residual-add-sidecar 50. A new dialect is one module here plus one import below.
"""

from hubkit.meta.dialects import consumer, consumer_ar, hubkit, reference, residual_sidecar  # noqa: F401
