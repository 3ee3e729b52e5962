"""``bridge-stg-plan``: will a configured run fit on the GPUs, and how long will it take.

``model_size`` (parameters, meta device) -> ``tokens`` (sequence per sample from the frame budget) -> ``flops`` ->
``memory`` (ZeRO 0-3, activations) -> ``planner`` (verdict and time) -> ``cli``. Every number is an estimate; each
module's docstring states its formulas and sources.
"""
