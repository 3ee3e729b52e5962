"""Bridge-STG: spatio-temporal video grounding with multimodal LLMs.

Import layers point downward: ``structures/ops/utils`` <- ``annotations`` <- ``data/model/loss/eval`` <- ``engine``
<- ``scripts``. The evaluation toolkit (``annotations``, ``eval``, ``cli``) never imports torch.
"""

__version__ = "0.1.0"
